// Standalone tests of the shared-memory core: shm (SystemRegion, keys, bounds,
// ElementReader) and the CUDA runtime loader where no GPU is needed.
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -Icsrc csrc/tests/test_shm.cpp
//       csrc/core/*.cpp -o /tmp/test_shm -ldl
//   /tmp/test_shm [fuzz-iterations]
//
// Every /dev/shm name made here is "/tritonfast-test-shm-<pid>-<n>" and is
// removed at the end of main (also on failed checks); names left behind by a
// run that died (sanitizer abort, signal) are removed by the next run, whose
// sweep unlinks those of processes no longer alive.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/cuda.hpp"
#include "core/errors.hpp"
#include "core/shm.hpp"

#include "tests/check.hpp"

using namespace tritonfast;

namespace {


template <typename F>
void expect_no_throw(const char* file, int line, F f) {
  ++g_checks;
  try {
    f();
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "%s:%d: unexpected exception %s\n", file, line, show(e.what()).c_str());
  }
}
#define EXPECT_NO_THROW(expr) expect_no_throw(__FILE__, __LINE__, [&]() { expr; })

// ============================================================ /dev/shm names

const std::string kPrefix = "tritonfast-test-shm-";
std::set<std::string> g_keys;  // every "/name" handed out, unlinked at exit

// A fresh key "/tritonfast-test-shm-<pid>-<n>" (registered for cleanup).
std::string fresh_key(const std::string& tag = "") {
  static int counter = 0;
  std::string key = "/" + kPrefix + std::to_string(::getpid()) + "-" + std::to_string(counter++) + tag;
  g_keys.insert(key);
  return key;
}

std::string dev_shm_path(const std::string& key) { return "/dev/shm" + key; }

bool exists_in_dev_shm(const std::string& key) {
  struct stat st {};
  return ::stat(dev_shm_path(key).c_str(), &st) == 0;
}

long long dev_shm_size(const std::string& key) {
  struct stat st {};
  if (::stat(dev_shm_path(key).c_str(), &st) != 0) return -1;
  return static_cast<long long>(st.st_size);
}

void cleanup_keys() {
  for (const auto& key : g_keys) ::shm_unlink(key.c_str());  // ENOENT is fine
  g_keys.clear();
}

// Names of earlier runs whose process is gone (a crash skips cleanup_keys).
void sweep_stale() {
  DIR* dir = ::opendir("/dev/shm");
  if (!dir) return;
  std::vector<std::string> stale;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.compare(0, kPrefix.size(), kPrefix) != 0) continue;
    const long pid = std::atol(name.c_str() + kPrefix.size());
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) stale.push_back("/" + name);
  }
  ::closedir(dir);
  for (const auto& key : stale) ::shm_unlink(key.c_str());
}

// True when /proc/self/maps has a mapping of /dev/shm/<name>.
bool mapped(const std::string& key) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const std::string needle = dev_shm_path(key);
  while (std::getline(maps, line)) {
    const auto at = line.find(needle);
    if (at == std::string::npos) continue;
    const auto end = at + needle.size();
    if (end == line.size() || line.compare(end, 10, " (deleted)") == 0) return true;
  }
  return false;
}

std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// ======================================================================= keys

void test_normalize_key() {
  CHECK_EQ(shm::normalize_key("name"), std::string("/name"));
  CHECK_EQ(shm::normalize_key("/name"), std::string("/name"));
  CHECK_EQ(shm::normalize_key("//name"), std::string("/name"));
  CHECK_EQ(shm::normalize_key("////name"), std::string("/name"));
  CHECK_EQ(shm::normalize_key("a.b-c_d"), std::string("/a.b-c_d"));
  EXPECT_THROW(SharedMemoryError, shm::normalize_key(""), "invalid shared memory key ''",
               "needs a name");
  EXPECT_THROW(SharedMemoryError, shm::normalize_key("/"), "'/'", "needs a name");
  EXPECT_THROW(SharedMemoryError, shm::normalize_key("///"), "needs a name");
  EXPECT_THROW(SharedMemoryError, shm::normalize_key("/a/b"), "'/a/b'", "only the leading '/'");
  EXPECT_THROW(SharedMemoryError, shm::normalize_key("a/"), "only the leading '/'");
  EXPECT_THROW(SharedMemoryError, shm::normalize_key(std::string_view("/a\0b", 4)),
               "NUL byte at position 2");
  EXPECT_THROW(SharedMemoryError, shm::normalize_key(std::string_view("\0", 1)),
               "NUL byte at position 0");
  const std::string longest(shm::kMaxKeyNameBytes, 'k');
  CHECK_EQ(shm::normalize_key(longest), "/" + longest);
  CHECK_EQ(shm::normalize_key("//" + longest), "/" + longest);
  EXPECT_THROW(SharedMemoryError, shm::normalize_key(longest + "k"), "256 bytes long", "255");

  // Every entry point normalises: bad keys fail before any syscall.
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create("/a/b", 16, true), "only the leading");
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::open(""), "needs a name");
}

// A key given without its slash (or with several) names the same object.
void test_key_forms_name_one_object() {
  const std::string key = fresh_key();
  auto a = shm::SystemRegion::create(key.substr(1), 64, true);
  CHECK_EQ(a->key(), key);
  CHECK(exists_in_dev_shm(key));
  auto b = shm::SystemRegion::open("//" + key.substr(1));
  CHECK_EQ(b->key(), key);
  a->write(3, "xyz", 3);
  CHECK(std::memcmp(b->data() + 3, "xyz", 3) == 0);
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create("///" + key.substr(1), 64, true),
               "'" + key + "'", "exists already");
  a->unlink();
  CHECK(!exists_in_dev_shm(key));

  // The longest name /dev/shm allows works end to end.
  std::string long_key = fresh_key("-");
  long_key += std::string(shm::kMaxKeyNameBytes + 1 - long_key.size(), 'L');
  g_keys.insert(long_key);
  CHECK_EQ(long_key.size(), shm::kMaxKeyNameBytes + 1);
  auto c = shm::SystemRegion::create(long_key, 8, true);
  CHECK(exists_in_dev_shm(long_key));
  c->unlink();
  CHECK(!exists_in_dev_shm(long_key));
}

// ============================================================ create / open

void test_create_and_attach() {
  const std::string key = fresh_key();
  auto a = shm::SystemRegion::create(key, 100, true);
  CHECK(a->owner());
  CHECK(!a->unlinked());
  CHECK_EQ(a->size(), std::size_t{100});
  CHECK_EQ(a->key(), key);
  CHECK(a->data() != nullptr);
  CHECK(exists_in_dev_shm(key));
  CHECK_EQ(dev_shm_size(key), 100LL);
  {
    struct stat st {};
    CHECK(::stat(dev_shm_path(key).c_str(), &st) == 0);
    CHECK_EQ(static_cast<int>(st.st_mode & 0777), 0600);
  }
  // Fresh memory reads as zeros.
  bool zero = true;
  for (std::size_t i = 0; i < a->size(); ++i) zero = zero && a->data()[i] == 0;
  CHECK(zero);

  // create_only on an existing key fails, naming it; the original is untouched.
  a->write(0, "hello", 5);
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(key, 100, true), "'" + key + "'",
               "exists already", "create_only");
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(key, 1, true), "exists already");
  CHECK(exists_in_dev_shm(key));
  CHECK(std::memcmp(a->data(), "hello", 5) == 0);

  // Attach (create_only=false): the whole object, not the size asked for.
  auto b = shm::SystemRegion::create(key, 10, false);
  CHECK(!b->owner());
  CHECK_EQ(b->size(), std::size_t{100});
  CHECK(b->data() != a->data());  // a second mapping
  CHECK(std::memcmp(b->data(), "hello", 5) == 0);
  auto c = shm::SystemRegion::create(key, 100, false);
  CHECK_EQ(c->size(), std::size_t{100});
  // Asking for more than it has is refused, naming both sizes.
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(key, 101, false), "'" + key + "'",
               "100 bytes", "101 bytes");

  // open(): also the whole object.
  auto d = shm::SystemRegion::open(key);
  CHECK(!d->owner());
  CHECK_EQ(d->size(), std::size_t{100});

  // Writes through any mapping are seen through every other one.
  b->write(50, "from-b", 6);
  CHECK(std::memcmp(a->data() + 50, "from-b", 6) == 0);
  CHECK(std::memcmp(d->span(50, 6), "from-b", 6) == 0);
  d->write(99, "!", 1);
  CHECK_EQ(static_cast<int>(a->data()[99]), static_cast<int>('!'));
  CHECK_EQ(static_cast<int>(c->data()[99]), static_cast<int>('!'));
  // Through the file as well (another process would see the same).
  {
    std::ifstream file(dev_shm_path(key), std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    CHECK_EQ(content.size(), std::size_t{100});
    CHECK_EQ(content.substr(0, 5), std::string("hello"));
    CHECK_EQ(content.substr(50, 6), std::string("from-b"));
  }

  // An attached region's unlink removes the name too (it is the same object).
  d->unlink();
  CHECK(d->unlinked());
  CHECK(!exists_in_dev_shm(key));
  // ... and the owner's unlink then finds it gone: not an error.
  EXPECT_NO_THROW(a->unlink());
  CHECK(a->unlinked());
  // Every mapping still works after the name is gone.
  a->write(0, "after", 5);
  CHECK(std::memcmp(b->data(), "after", 5) == 0);

  // The name is free again: a new, separate object.
  auto e = shm::SystemRegion::create(key, 16, true);
  CHECK(e->owner());
  CHECK_EQ(e->size(), std::size_t{16});
  CHECK(e->data()[0] == 0);
  CHECK(std::memcmp(b->data(), "after", 5) == 0);
  e->unlink();
}

void test_open_missing_and_empty() {
  const std::string missing = fresh_key();
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::open(missing), "cannot open",
               "'" + missing + "'", "shm_open failed", "No such file", "errno " + std::to_string(ENOENT));
  CHECK(!exists_in_dev_shm(missing));

  // 0 bytes: refused before anything is created.
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(missing, 0, true), "'" + missing + "'",
               "0 bytes", "must be positive");
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(missing, 0, false), "0 bytes");
  CHECK(!exists_in_dev_shm(missing));

  // An object another process created but has not sized yet.
  const std::string empty = fresh_key();
  const int fd = ::shm_open(empty.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  CHECK(fd >= 0);
  if (fd >= 0) ::close(fd);
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::open(empty), "'" + empty + "'", "is empty");
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(empty, 8, false), "is empty");
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(empty, 8, true), "exists already");
  CHECK(exists_in_dev_shm(empty));  // a failed attach leaves others' objects alone
  ::shm_unlink(empty.c_str());

  // An object larger than the address space (sized by another process without
  // reserving it): open and attach fail in mmap, naming the key and size.
  {
    const std::string huge = fresh_key();
    const int hfd = ::shm_open(huge.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(hfd >= 0);
    const off_t huge_size = static_cast<off_t>(std::uint64_t{1} << 60);
    if (hfd >= 0 && ::ftruncate(hfd, huge_size) == 0) {
      const std::string bytes = std::to_string(static_cast<long long>(huge_size)) + " bytes";
      EXPECT_THROW(SharedMemoryError, shm::SystemRegion::open(huge), "cannot map", "'" + huge + "'",
                   bytes, "mmap failed");
      EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(huge, 8, false), "mmap failed");
      CHECK(exists_in_dev_shm(huge));  // not ours to remove
    }
    if (hfd >= 0) ::close(hfd);
    ::shm_unlink(huge.c_str());
  }

  // Sizes the kernel refuses: the name made for them is removed again.
  for (std::size_t huge : {std::numeric_limits<std::size_t>::max(),
                           static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max()) + 1}) {
    const std::string key = fresh_key();
    EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(key, huge, true), "'" + key + "'",
                 std::to_string(huge) + " bytes", "failed");
    CHECK(!exists_in_dev_shm(key));
  }

  // More than a size-limited /dev/shm holds: an error now (ENOSPC from the
  // reservation, with the hint), not a SIGBUS later, and nothing left behind.
  struct statvfs vfs {};
  if (::statvfs("/dev/shm", &vfs) == 0 && vfs.f_blocks > 0) {
    const std::size_t too_big = std::size_t{1} << 60;
    const std::string key = fresh_key();
    EXPECT_THROW(SharedMemoryError, shm::SystemRegion::create(key, too_big, true), "'" + key + "'",
                 "reserving the memory failed", "errno " + std::to_string(ENOSPC), "--shm-size");
    CHECK(!exists_in_dev_shm(key));
  } else {
    std::printf("skipped: /dev/shm has no size limit (ENOSPC test)\n");
  }
}

// ============================================================ sizes / bounds

void check_region_of_size(std::size_t n) {
  const std::string key = fresh_key();
  auto r = shm::SystemRegion::create(key, n, true);
  CHECK_EQ(r->size(), n);
  CHECK_EQ(dev_shm_size(key), static_cast<long long>(n));
  // Every byte, first to last, is writable and readable through a second mapping.
  std::vector<std::uint8_t> pattern(n);
  for (std::size_t i = 0; i < n; ++i) pattern[i] = static_cast<std::uint8_t>(i * 31 + 7);
  r->write(0, pattern.data(), n);
  auto other = shm::SystemRegion::open(key);
  CHECK_EQ(other->size(), n);
  CHECK(std::memcmp(other->span(0, n), pattern.data(), n) == 0);
  r->write(n - 1, "Z", 1);
  CHECK_EQ(static_cast<int>(*other->span(n - 1, 1)), static_cast<int>('Z'));
  CHECK(r->span(n, 0) == r->data() + n);  // empty range at the end is fine
  EXPECT_NO_THROW(r->write(n, nullptr, 0));
  EXPECT_THROW(SharedMemoryError, r->span(n, 1), "1 bytes at offset " + std::to_string(n),
               "of " + std::to_string(n) + " bytes");
  EXPECT_THROW(SharedMemoryError, r->span(0, n + 1), std::to_string(n + 1) + " bytes at offset 0");
  r->unlink();
}

void test_sizes() {
  const std::size_t page = page_size();
  for (std::size_t n : {std::size_t{1}, std::size_t{2}, std::size_t{7}, page - 1, page, page + 1,
                        3 * page - 7, 4 * page, std::size_t{1} << 20}) {
    check_region_of_size(n);
  }
}

void test_bounds() {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  const std::string key = fresh_key();
  auto r = shm::SystemRegion::create(key, 100, true);
  const std::string region = "shared memory region '" + key + "' of 100 bytes";

  // Inside.
  CHECK(r->span(0, 100) == r->data());
  CHECK(r->span(99, 1) == r->data() + 99);
  CHECK(r->span(0, 0) == r->data());
  CHECK(r->span(100, 0) == r->data() + 100);
  CHECK(r->span(40, 60) == r->data() + 40);

  // Ending past the end.
  EXPECT_THROW(SharedMemoryError, r->span(0, 101), "101 bytes at offset 0", region,
               "would end at byte 101");
  EXPECT_THROW(SharedMemoryError, r->span(99, 2), "2 bytes at offset 99", region,
               "would end at byte 101");
  EXPECT_THROW(SharedMemoryError, r->span(100, 1), "1 bytes at offset 100", region,
               "would end at byte 101");
  EXPECT_THROW(SharedMemoryError, r->span(50, kMax - 50), std::to_string(kMax - 50) + " bytes",
               "offset 50", region, "would end at byte " + std::to_string(kMax));
  // Starting past the end (even with nothing to read).
  EXPECT_THROW(SharedMemoryError, r->span(101, 0), "0 bytes at offset 101", region,
               "offset is past its end");
  EXPECT_THROW(SharedMemoryError, r->span(kMax, 0), "at offset " + std::to_string(kMax),
               "past its end");
  EXPECT_THROW(SharedMemoryError, r->span(kMax, kMax), std::to_string(kMax) + " bytes",
               "past its end");
  EXPECT_THROW(SharedMemoryError, r->span(kMax, 1), "past its end");
  // Sums that wrap around 2**64 must not sneak through.
  EXPECT_THROW(SharedMemoryError, r->span(1, kMax), std::to_string(kMax) + " bytes at offset 1",
               region, "overflows 64 bits");
  EXPECT_THROW(SharedMemoryError, r->span(100, kMax), "overflows 64 bits");
  EXPECT_THROW(SharedMemoryError, r->span(0, kMax), std::to_string(kMax) + " bytes at offset 0",
               "would end at byte " + std::to_string(kMax));
  EXPECT_THROW(SharedMemoryError, r->span(kMax - 10, 20), "past its end");
  EXPECT_THROW(SharedMemoryError, r->span(std::uint64_t{1} << 63, std::uint64_t{1} << 63),
               "past its end");

  // write(): same checks, and nothing is written when they fail (ASan would
  // see a write past the mapping's page otherwise only on huge sizes).
  const char src[8] = "1234567";
  r->write(92, src, 8);
  CHECK(std::memcmp(r->data() + 92, src, 8) == 0);
  std::vector<std::uint8_t> before(r->data(), r->data() + 100);
  EXPECT_THROW(SharedMemoryError, r->write(93, src, 8), "8 bytes at offset 93", region,
               "would end at byte 101");
  EXPECT_THROW(SharedMemoryError, r->write(100, src, 1), "1 bytes at offset 100", region);
  EXPECT_THROW(SharedMemoryError, r->write(101, src, 0), "0 bytes at offset 101", "past its end");
  EXPECT_THROW(SharedMemoryError, r->write(1, src, kMax), "overflows 64 bits");
  EXPECT_THROW(SharedMemoryError, r->write(kMax, src, 2), "past its end");
  EXPECT_THROW(SharedMemoryError, r->write(0, src, kMax), region);
  CHECK(std::vector<std::uint8_t>(r->data(), r->data() + 100) == before);
  EXPECT_NO_THROW(r->write(0, nullptr, 0));
  EXPECT_NO_THROW(r->write(100, nullptr, 0));

  // check_range on its own: the name given, exact boundaries, 0-byte regions.
  EXPECT_NO_THROW(shm::check_range("x", 0, 0, 0));
  EXPECT_NO_THROW(shm::check_range("x", 10, 0, 10));
  EXPECT_NO_THROW(shm::check_range("x", 0, kMax, kMax));
  EXPECT_NO_THROW(shm::check_range("x", kMax, 0, kMax));
  EXPECT_NO_THROW(shm::check_range("x", 1, kMax - 1, kMax));
  EXPECT_THROW(SharedMemoryError, shm::check_range("output 'OUT0'", 0, 1, 0),
               "1 bytes at offset 0 do not fit in output 'OUT0' of 0 bytes", "would end at byte 1");
  EXPECT_THROW(SharedMemoryError, shm::check_range("x", 1, 0, 0), "offset is past its end");
  EXPECT_THROW(SharedMemoryError, shm::check_range("x", 1, kMax, kMax), "overflows 64 bits");
  EXPECT_THROW(SharedMemoryError, shm::check_range("x", 2, kMax - 1, kMax), "overflows 64 bits");
  EXPECT_THROW(SharedMemoryError, shm::check_range("x", 1, kMax - 1, kMax - 1),
               "would end at byte " + std::to_string(kMax));
  r->unlink();
}

// ==================================================== unlink / destruction

void test_unlink_and_destroy() {
  const std::string key = fresh_key();
  auto r = shm::SystemRegion::create(key, 3 * page_size(), true);
  CHECK(exists_in_dev_shm(key));
  CHECK(mapped(key));
  r->unlink();
  CHECK(r->unlinked());
  CHECK(!exists_in_dev_shm(key));
  EXPECT_NO_THROW(r->unlink());  // idempotent
  EXPECT_NO_THROW(r->unlink());
  CHECK(r->unlinked());
  EXPECT_THROW(SharedMemoryError, shm::SystemRegion::open(key), "No such file");
  // Mapped until destroyed, even though the name is gone.
  CHECK(mapped(key));
  r->write(0, "still", 5);
  CHECK(std::memcmp(r->data(), "still", 5) == 0);

  // The name removed behind the region's back (another process): still fine.
  const std::string key2 = fresh_key();
  auto s = shm::SystemRegion::create(key2, 10, true);
  CHECK(::shm_unlink(key2.c_str()) == 0);
  EXPECT_NO_THROW(s->unlink());
  CHECK(s->unlinked());

  // Destruction unmaps; the last shared_ptr holder decides when.
  std::shared_ptr<shm::SystemRegion> alias = r;
  r.reset();
  CHECK(mapped(key));
  alias.reset();
  CHECK(!mapped(key));
  s.reset();
  CHECK(!mapped(key2));

  // Destroying without unlinking keeps the object (Triton may still use it).
  const std::string key3 = fresh_key();
  {
    auto t = shm::SystemRegion::create(key3, 32, true);
    t->write(0, "kept", 4);
    CHECK(mapped(key3));
  }
  CHECK(!mapped(key3));
  CHECK(exists_in_dev_shm(key3));
  {
    auto t = shm::SystemRegion::open(key3);
    CHECK(std::memcmp(t->data(), "kept", 4) == 0);
    t->unlink();
  }
  CHECK(!exists_in_dev_shm(key3));
  CHECK(!mapped(key3));

  // Many regions created (or attached, asking for less) and dropped: no
  // mapping is left behind.
  const std::string key4 = fresh_key();
  for (int i = 0; i < 200; ++i) {
    auto t = shm::SystemRegion::create(key4, page_size() + static_cast<std::size_t>(200 - i), false);
    CHECK_EQ(t->owner(), i == 0 || i % 2 == 0);
    auto u = shm::SystemRegion::open(key4);
    CHECK_EQ(u->size(), t->size());
    if (i % 2) t->unlink();
  }
  CHECK(!mapped(key4));
  ::shm_unlink(key4.c_str());
}

// ============================================================ ElementReader

std::string prefix(std::uint32_t n) {
  std::string out(4, '\0');
  out[0] = static_cast<char>(n & 0xFF);
  out[1] = static_cast<char>((n >> 8) & 0xFF);
  out[2] = static_cast<char>((n >> 16) & 0xFF);
  out[3] = static_cast<char>((n >> 24) & 0xFF);
  return out;
}

std::string serialize(const std::vector<std::string>& elements) {
  std::string out;
  for (const auto& e : elements) out += prefix(static_cast<std::uint32_t>(e.size())) + e;
  return out;
}

// The bytes in a heap block of exactly their size, so that ASan sees any read
// past the end.
struct Exact {
  explicit Exact(const std::string& s) : size(s.size()), data(new std::uint8_t[s.size()]) {
    if (size) std::memcpy(data.get(), s.data(), size);
  }
  std::size_t size;
  std::unique_ptr<std::uint8_t[]> data;
};

void test_reader_valid() {
  const std::vector<std::string> elements = {
      "", "a", "hello", std::string("nul\0inside", 10), std::string(300, 'x'), "",
      std::string(70000, '\xFF'), "end"};
  const Exact buf(serialize(elements));
  shm::ElementReader reader(buf.data.get(), buf.size, 0, "output 'OUT'");
  std::size_t consumed = 0;
  for (std::size_t i = 0; i < elements.size(); ++i) {
    const std::string_view e = reader.next(i);
    CHECK_EQ(std::string(e), elements[i]);
    // A view into the buffer, right after its prefix: no copy.
    consumed += 4;
    CHECK(reinterpret_cast<const std::uint8_t*>(e.data()) == buf.data.get() + consumed);
    consumed += e.size();
  }
  CHECK_EQ(consumed, buf.size);
  // One more than there are: the count was wrong.
  EXPECT_THROW(DecodeError, reader.next(elements.size()),
               "BYTES element " + std::to_string(elements.size()),
               "at byte " + std::to_string(buf.size), "of output 'OUT'", "0 bytes left");

  // Only zero-length elements.
  const Exact zeros(serialize({"", "", ""}));
  shm::ElementReader z(zeros.data.get(), zeros.size, 0, "z");
  for (std::size_t i = 0; i < 3; ++i) CHECK(z.next(i).empty());
  EXPECT_THROW(DecodeError, z.next(3), "BYTES element 3 at byte 12");

  // Fewer elements read than the buffer holds: the rest is not looked at (a
  // region is often larger than its tensor), and garbage there is harmless.
  const Exact trailing(serialize({"ab", "cd"}) + "\xFF\xFF\xFF\xFF junk");
  shm::ElementReader t(trailing.data.get(), trailing.size, 0, "t");
  CHECK_EQ(std::string(t.next(0)), std::string("ab"));
  CHECK_EQ(std::string(t.next(1)), std::string("cd"));
  EXPECT_THROW(DecodeError, t.next(2), "BYTES element 2 at byte 12", "length prefix 4294967295",
               "exceeds the 5 bytes left");

  // Empty buffer (and a null pointer with it): the first element fails cleanly.
  shm::ElementReader none(nullptr, 0, 7, "empty span");
  EXPECT_THROW(DecodeError, none.next(0), "BYTES element 0 at byte 7 of empty span",
               "4-byte length prefix", "0 bytes left");
}

void test_reader_malformed() {
  // Truncated prefixes: 1..3 bytes where 4 are needed.
  for (std::size_t cut = 1; cut < 4; ++cut) {
    const Exact buf(prefix(0).substr(0, cut));
    shm::ElementReader r(buf.data.get(), buf.size, 0, "in");
    EXPECT_THROW(DecodeError, r.next(0), "BYTES element 0 at byte 0 of in",
                 "needs more than the " + std::to_string(cut) + " bytes left");
  }
  // A truncated prefix after valid elements: the index and offset are its own.
  {
    const Exact buf(serialize({"abc", "de"}) + prefix(5).substr(0, 2));
    shm::ElementReader r(buf.data.get(), buf.size, 1000, "region '/k'");
    CHECK_EQ(std::string(r.next(0)), std::string("abc"));
    CHECK_EQ(std::string(r.next(1)), std::string("de"));
    EXPECT_THROW(DecodeError, r.next(2), "BYTES element 2 at byte 1013 of region '/k'",
                 "2 bytes left");
  }
  // Over-long prefixes: one more than is left, far more, the maximum.
  for (std::uint32_t length : {6u, 7u, 1000u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu}) {
    const Exact buf(prefix(length) + "hello");
    shm::ElementReader r(buf.data.get(), buf.size, 0, "in");
    EXPECT_THROW(DecodeError, r.next(0), "BYTES element 0 at byte 0 of in",
                 "length prefix " + std::to_string(length), "exceeds the 5 bytes left");
  }
  {
    // Exactly what is left is fine.
    const Exact buf(prefix(5) + "hello");
    shm::ElementReader r(buf.data.get(), buf.size, 0, "in");
    CHECK_EQ(std::string(r.next(0)), std::string("hello"));
  }
  {
    // Prefix bytes are little-endian.
    const Exact buf(std::string("\x01\x00\x00\x00", 4) + "A" + std::string("\x00\x01\x00\x00", 4) +
                    std::string(256, 'B'));
    shm::ElementReader r(buf.data.get(), buf.size, 0, "in");
    CHECK_EQ(r.next(0).size(), std::size_t{1});
    CHECK_EQ(r.next(1).size(), std::size_t{256});
  }
  // Over-long prefix in the middle: reported with its own offset.
  {
    const Exact buf(serialize({"x", "yy"}) + prefix(100) + "short");
    shm::ElementReader r(buf.data.get(), buf.size, 64, "in");
    r.next(0);
    r.next(1);
    EXPECT_THROW(DecodeError, r.next(2), "BYTES element 2 at byte 75", "length prefix 100",
                 "exceeds the 5 bytes left");
  }
  // A base offset near 2**64 (a huge region offset) only changes the message.
  {
    const Exact buf(prefix(9));
    shm::ElementReader r(buf.data.get(), buf.size, std::numeric_limits<std::uint64_t>::max() - 1,
                         "in");
    EXPECT_THROW(DecodeError, r.next(0), "at byte " + std::to_string(std::numeric_limits<std::uint64_t>::max() - 1));
  }
}

// The reader over a real region, as the bindings use it (span, then next()).
void test_reader_over_region() {
  const std::string key = fresh_key();
  auto r = shm::SystemRegion::create(key, 64, true);
  const std::string payload = serialize({"alpha", "", "beta"});
  r->write(16, payload.data(), payload.size());
  auto other = shm::SystemRegion::open(key);
  shm::ElementReader reader(other->span(16, payload.size()), payload.size(), 16, "region");
  CHECK_EQ(std::string(reader.next(0)), std::string("alpha"));
  CHECK_EQ(std::string(reader.next(1)), std::string(""));
  CHECK_EQ(std::string(reader.next(2)), std::string("beta"));
  EXPECT_THROW(DecodeError, reader.next(3), "at byte " + std::to_string(16 + payload.size()));
  // A prefix pointing past the region's end, read to the region's last byte.
  const std::string bad = prefix(1000);
  r->write(60, bad.data(), 4);
  shm::ElementReader tail(other->span(60, 4), 4, 60, "region");
  EXPECT_THROW(DecodeError, tail.next(0), "at byte 60", "length prefix 1000", "exceeds the 0 bytes left");
  r->unlink();
}

// ======================================================================= fuzz

// Reference decoder: the elements read for `count`, or the index of the first
// one that cannot be read.
struct Expected {
  std::vector<std::string> elements;
  long failed_at = -1;
};

Expected reference(const std::string& buf, std::size_t count) {
  Expected out;
  std::size_t at = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (buf.size() - at < 4) {
      out.failed_at = static_cast<long>(i);
      return out;
    }
    std::uint32_t n = 0;
    for (int b = 3; b >= 0; --b) n = n << 8 | static_cast<unsigned char>(buf[at + b]);
    if (n > buf.size() - at - 4) {
      out.failed_at = static_cast<long>(i);
      return out;
    }
    out.elements.push_back(buf.substr(at + 4, n));
    at += 4 + n;
  }
  return out;
}

void fuzz(long iterations) {
  std::mt19937_64 rng(0x5EED5A7E);
  auto below = [&](std::size_t n) -> std::size_t { return n ? rng() % n : 0; };
  long ok = 0, decode = 0;
  for (long it = 0; it < iterations; ++it) {
    // A valid buffer...
    std::vector<std::string> elements(below(9));
    for (auto& e : elements) {
      const std::size_t len = below(4) == 0 ? 0 : below(below(8) == 0 ? 600 : 24);
      e.resize(len);
      for (auto& c : e) c = static_cast<char>(rng());
    }
    std::string buf = serialize(elements);
    // ... then mutated.
    const std::size_t mutations = below(4);
    for (std::size_t m = 0; m < mutations; ++m) {
      switch (below(7)) {
        case 0:  // flip a byte
          if (!buf.empty()) buf[below(buf.size())] = static_cast<char>(rng());
          break;
        case 1:  // truncate
          buf.resize(below(buf.size() + 1));
          break;
        case 2:  // random tail
          for (std::size_t n = below(12); n; --n) buf.push_back(static_cast<char>(rng()));
          break;
        case 3: {  // an extreme prefix somewhere
          if (buf.size() >= 4) {
            static const std::uint32_t kValues[] = {0, 1, 3, 4, 5, 0x7FFFFFFF, 0x80000000,
                                                    0xFFFFFFFF, 0xFFFFFFFC, 0x100};
            const std::string p = prefix(kValues[below(std::size(kValues))]);
            buf.replace(below(buf.size() - 3), 4, p);
          }
          break;
        }
        case 4: {  // small change to a length (off by one, either way)
          if (buf.size() >= 4) {
            const std::size_t at = below(buf.size() - 3);
            buf[at] = static_cast<char>(static_cast<unsigned char>(buf[at]) + (below(2) ? 1 : -1));
          }
          break;
        }
        case 5:  // drop a byte in the middle
          if (!buf.empty()) buf.erase(below(buf.size()), 1);
          break;
        default:  // duplicate a chunk
          if (!buf.empty()) {
            const std::size_t at = below(buf.size());
            buf.insert(at, buf.substr(at, below(9)));
          }
          break;
      }
    }
    // Read a count around the true one.
    std::size_t count = elements.size();
    switch (below(4)) {
      case 0: count += 1 + below(3); break;
      case 1: count = below(count + 1); break;
      default: break;
    }
    const Expected want = reference(buf, count);
    const Exact exact(buf);
    const std::uint64_t base = below(3) == 0 ? rng() : below(1 << 20);
    shm::ElementReader reader(exact.data.get(), exact.size, base, "fuzz");
    std::size_t i = 0;
    try {
      for (; i < count; ++i) {
        const std::string_view e = reader.next(i);
        const auto* p = reinterpret_cast<const std::uint8_t*>(e.data());
        if (p < exact.data.get() || p + e.size() > exact.data.get() + exact.size ||
            i >= want.elements.size() || e != want.elements[i]) {
          ++g_failures;
          std::fprintf(stderr, "fuzz %ld: element %zu differs from the reference (buffer %s)\n",
                       it, i, show(buf).c_str());
          break;
        }
      }
      if (i == count) {
        ++ok;
        if (want.failed_at != -1) {
          ++g_failures;
          std::fprintf(stderr, "fuzz %ld: read %zu elements, the reference fails at %ld (%s)\n",
                       it, count, want.failed_at, show(buf).c_str());
        }
      }
    } catch (const DecodeError& e) {
      ++decode;
      const std::string message = e.what();
      if (static_cast<long>(i) != want.failed_at ||
          message.find("BYTES element " + std::to_string(i) + " at byte ") == std::string::npos ||
          message.find(" of fuzz: ") == std::string::npos) {
        ++g_failures;
        std::fprintf(stderr, "fuzz %ld: DecodeError at %zu (reference %ld): %s\n", it, i,
                     want.failed_at, message.c_str());
      }
    } catch (const std::exception& e) {
      ++g_failures;
      std::fprintf(stderr, "fuzz %ld: unexpected %s (buffer %s)\n", it, e.what(), show(buf).c_str());
    }
    ++g_checks;
  }
  std::printf("fuzz: %ld iterations: %ld read, %ld decode errors\n", iterations, ok, decode);

  // Bounds checks fuzzed against a plain model, values biased to the edges.
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  auto edge = [&]() -> std::uint64_t {
    switch (below(6)) {
      case 0: return below(8);
      case 1: return kMax - below(8);
      case 2: return (std::uint64_t{1} << 63) + below(3) - 1;
      case 3: return below(300);
      case 4: return rng();
      default: return below(120);
    }
  };
  for (long it = 0; it < iterations; ++it) {
    const std::uint64_t region = below(2) ? edge() : below(200);
    const std::uint64_t offset = edge();
    const std::uint64_t n = edge();
    const unsigned __int128 end = static_cast<unsigned __int128>(offset) + n;
    const bool fits = end <= region;
    bool threw = false;
    try {
      shm::check_range("r", offset, n, region);
    } catch (const SharedMemoryError& e) {
      threw = true;
      const std::string message = e.what();
      if (message.find(std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                       " do not fit in r of " + std::to_string(region) + " bytes") ==
          std::string::npos) {
        ++g_failures;
        std::fprintf(stderr, "fuzz range: message %s\n", message.c_str());
      }
    }
    ++g_checks;
    if (threw == fits) {
      ++g_failures;
      std::fprintf(stderr, "fuzz range: offset %llu n %llu region %llu: threw=%d\n",
                   static_cast<unsigned long long>(offset), static_cast<unsigned long long>(n),
                   static_cast<unsigned long long>(region), threw);
    }
  }
}

// ======================================================================= CUDA

// What works without a GPU: a machine with libcudart and no driver (or with
// neither) gets clear SharedMemoryErrors, never a crash. With a GPU the same
// calls succeed; that is accepted too (the GPU tests live in Python).
void test_cuda_without_gpu() {
  // Nothing to try: the message says so and lists nothing.
  EXPECT_THROW(SharedMemoryError, cuda::load_runtime({}, false), "CUDA runtime library not found",
               "(tried: )", "needs an NVIDIA GPU");
  // Directories without it: every path tried is listed.
  EXPECT_THROW(SharedMemoryError, cuda::load_runtime({"/nonexistent-tritonfast"}, false),
               "/nonexistent-tritonfast/libcudart.so", "/nonexistent-tritonfast/libcudart.so.12",
               "/nonexistent-tritonfast/libcudart.so.11.0");
  // A failed load is not remembered: the system search is tried next.
  std::string path;
  try {
    path = cuda::load_runtime();
  } catch (const SharedMemoryError& e) {
    ++g_checks;
    CHECK(std::string(e.what()).find("CUDA runtime library not found") != std::string::npos);
    std::printf("cuda: no runtime here: %s\n", e.what());
    EXPECT_THROW(SharedMemoryError, cuda::device_count(), "CUDA runtime library not found");
    EXPECT_THROW(SharedMemoryError, cuda::CudaRegion::create(16, 0), "CUDA runtime library not found");
    return;
  }
  CHECK(path.find("libcudart") != std::string::npos);
  // Loaded once: later calls return it, whatever they ask for.
  CHECK_EQ(cuda::load_runtime({}, false), path);
  CHECK_EQ(cuda::load_runtime({"/nonexistent-tritonfast"}), path);

  int count = -1;
  try {
    count = cuda::device_count();
  } catch (const SharedMemoryError& e) {
    const std::string message = e.what();
    ++g_checks;
    CHECK(message.find("no CUDA device") != std::string::npos);
    CHECK(message.find("cudaGetDeviceCount") != std::string::npos);
    CHECK(message.find(path) != std::string::npos);
    CHECK(message.find("needs an NVIDIA GPU") != std::string::npos);
    std::printf("cuda: %s\n", message.c_str());
    // Asked again: the same answer, no crash.
    EXPECT_THROW(SharedMemoryError, cuda::device_count(), "no CUDA device");
    EXPECT_THROW(SharedMemoryError, cuda::CudaRegion::create(16, 0), "no CUDA device");
    EXPECT_THROW(SharedMemoryError, cuda::CudaRegion::create(0, -1), "no CUDA device");
    int host = 0;
    EXPECT_THROW(SharedMemoryError, cuda::pointer_info(&host), "cudaPointerGetAttributes");
    return;
  }
  CHECK(count > 0);
  std::printf("cuda: %d device(s) via %s (GPU present; no-GPU paths not exercised)\n", count,
              path.c_str());
  EXPECT_THROW(SharedMemoryError, cuda::CudaRegion::create(16, count), "does not exist");
  EXPECT_THROW(SharedMemoryError, cuda::CudaRegion::create(16, -1), "does not exist");
  EXPECT_THROW(SharedMemoryError, cuda::CudaRegion::create(0, 0), "0 bytes");
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 100000;
  sweep_stale();
  // Failed checks do not stop the suite; an exception escaping a test would
  // skip cleanup, so catch it here.
  const std::pair<const char*, void (*)()> tests[] = {
      {"normalize_key", test_normalize_key},
      {"key_forms_name_one_object", test_key_forms_name_one_object},
      {"create_and_attach", test_create_and_attach},
      {"open_missing_and_empty", test_open_missing_and_empty},
      {"sizes", test_sizes},
      {"bounds", test_bounds},
      {"unlink_and_destroy", test_unlink_and_destroy},
      {"reader_valid", test_reader_valid},
      {"reader_malformed", test_reader_malformed},
      {"reader_over_region", test_reader_over_region},
      {"cuda_without_gpu", test_cuda_without_gpu},
  };
  for (const auto& [name, test] : tests) {
    try {
      test();
    } catch (const std::exception& e) {
      ++g_failures;
      std::fprintf(stderr, "%s: uncaught exception: %s\n", name, e.what());
    }
  }
  try {
    fuzz(iterations);
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "fuzz: uncaught exception: %s\n", e.what());
  }
  // Nothing of ours may be left in /dev/shm.
  for (const auto& key : g_keys) {
    if (exists_in_dev_shm(key)) {
      ++g_failures;
      std::fprintf(stderr, "left behind in /dev/shm: %s\n", key.c_str());
    }
  }
  cleanup_keys();
  std::printf("%d checks, %d failures\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
