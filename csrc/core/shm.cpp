// POSIX shared-memory regions (see shm.hpp). Copies: write() is one memcpy;
// nothing else here copies tensor bytes.
#include "core/shm.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "core/errors.hpp"

namespace tritonfast::shm {

namespace {

// Permissions of a region we create: owner only, as tritonclient's libcshm did.
constexpr mode_t kCreateMode = 0600;
// Retries of create-or-attach when another process unlinks the name between
// our O_EXCL create failing and our attach (each lap is two syscalls).
constexpr int kCreateAttempts = 8;

// The errno text, with the number a user can search for.
std::string errno_with_number(int error) {
  return errno_text(error) + " (errno " + std::to_string(error) + ")";
}

std::string bytes_text(std::uint64_t n) { return std::to_string(n) + " bytes"; }

// Closes a file descriptor at scope exit; a mapping does not need its fd.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::uint8_t* map(const std::string& key, int fd, std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    throw SharedMemoryError("cannot map shared memory region '" + key + "' (" + bytes_text(size) +
                            "): mmap failed: " + errno_with_number(err));
  }
  return static_cast<std::uint8_t*>(p);
}

// Size of an open object; SharedMemoryError when fstat fails or it is empty.
std::size_t object_size(const std::string& key, int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    throw SharedMemoryError("cannot read the size of shared memory region '" + key +
                            "': fstat failed: " + errno_with_number(err));
  }
  if (st.st_size <= 0) {
    throw SharedMemoryError("shared memory region '" + key +
                            "' is empty (0 bytes): nothing to map; was it created by another "
                            "process that has not sized it yet?");
  }
  return static_cast<std::size_t>(st.st_size);
}

std::string hint_for(int err) {
  if (err == ENOSPC || err == ENOMEM) {
    return "; is /dev/shm large enough? (Docker's default is 64 MiB: run the container with "
           "--shm-size or --ipc=host)";
  }
  if (err == EACCES) return "; the region belongs to another user or is not writable";
  return "";
}

}  // namespace

std::string normalize_key(std::string_view key) {
  if (const auto nul = key.find('\0'); nul != std::string_view::npos) {
    throw SharedMemoryError("invalid shared memory key: it holds a NUL byte at position " +
                            std::to_string(nul));
  }
  std::size_t start = 0;
  while (start < key.size() && key[start] == '/') ++start;
  std::string_view name = key.substr(start);
  const std::string shown = "'" + std::string(key) + "'";
  if (name.empty()) {
    throw SharedMemoryError("invalid shared memory key " + shown +
                            ": it needs a name after the leading '/', e.g. '/input0'");
  }
  if (name.find('/') != std::string_view::npos) {
    throw SharedMemoryError("invalid shared memory key " + shown +
                            ": only the leading '/' is allowed (shm_open names are not paths)");
  }
  if (name.size() > kMaxKeyNameBytes) {
    throw SharedMemoryError("invalid shared memory key: its name is " +
                            std::to_string(name.size()) + " bytes long, more than the " +
                            std::to_string(kMaxKeyNameBytes) + " a /dev/shm file name can have");
  }
  return "/" + std::string(name);
}

std::shared_ptr<SystemRegion> SystemRegion::create(std::string key, std::size_t byte_size,
                                                   bool create_only) {
  key = normalize_key(key);
  if (byte_size == 0) {
    throw SharedMemoryError("cannot create shared memory region '" + key +
                            "' of 0 bytes: byte_size must be positive");
  }
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    Fd created(::shm_open(key.c_str(), O_RDWR | O_CREAT | O_EXCL, kCreateMode));
    if (created.get() >= 0) {
      // From here on the name is ours: remove it again if we cannot finish.
      auto fail = [&](const std::string& step, int err) -> SharedMemoryError {
        ::shm_unlink(key.c_str());
        return SharedMemoryError("cannot create shared memory region '" + key + "' of " +
                                 bytes_text(byte_size) + ": " + step + " failed: " +
                                 errno_with_number(err) + hint_for(err));
      };
      if (::ftruncate(created.get(), static_cast<off_t>(byte_size)) != 0) throw fail("ftruncate", errno);
      // ftruncate only sets the size; tmpfs hands out pages on first touch and
      // answers a full /dev/shm with SIGBUS. Reserving them now makes that an
      // error here. EINVAL/EOPNOTSUPP: the file system cannot reserve; go on.
      const int rc = ::posix_fallocate(created.get(), 0, static_cast<off_t>(byte_size));
      if (rc != 0 && rc != EINVAL && rc != EOPNOTSUPP) throw fail("reserving the memory", rc);
      std::uint8_t* data = nullptr;
      try {
        data = map(key, created.get(), byte_size);
      } catch (...) {
        ::shm_unlink(key.c_str());
        throw;
      }
      return std::shared_ptr<SystemRegion>(new SystemRegion(key, data, byte_size, true));
    }
    const int err = errno;
    if (err != EEXIST) {
      throw SharedMemoryError("cannot create shared memory region '" + key + "' of " +
                              bytes_text(byte_size) + ": shm_open failed: " + errno_with_number(err) +
                              hint_for(err));
    }
    if (create_only) {
      throw SharedMemoryError("cannot create shared memory region '" + key +
                              "': it exists already (create_only=True)");
    }
    Fd existing(::shm_open(key.c_str(), O_RDWR, 0));
    if (existing.get() < 0) {
      const int open_err = errno;
      if (open_err == ENOENT) continue;  // unlinked since our create failed: try again
      throw SharedMemoryError("cannot attach to existing shared memory region '" + key +
                              "': shm_open failed: " + errno_with_number(open_err) + hint_for(open_err));
    }
    const std::size_t size = object_size(key, existing.get());
    if (size < byte_size) {
      throw SharedMemoryError("shared memory region '" + key + "' exists with " +
                              bytes_text(size) + ", fewer than the " + bytes_text(byte_size) +
                              " requested; destroy it or use another key");
    }
    return std::shared_ptr<SystemRegion>(
        new SystemRegion(key, map(key, existing.get(), size), size, false));
  }
  throw SharedMemoryError("cannot create shared memory region '" + key +
                          "': another process keeps creating and removing it");
}

std::shared_ptr<SystemRegion> SystemRegion::open(std::string key) {
  key = normalize_key(key);
  Fd fd(::shm_open(key.c_str(), O_RDWR, 0));
  if (fd.get() < 0) {
    const int err = errno;
    throw SharedMemoryError("cannot open shared memory region '" + key +
                            "': shm_open failed: " + errno_with_number(err) + hint_for(err));
  }
  const std::size_t size = object_size(key, fd.get());
  return std::shared_ptr<SystemRegion>(new SystemRegion(key, map(key, fd.get(), size), size, false));
}

SystemRegion::~SystemRegion() {
  if (data_) ::munmap(data_, size_);
}

void SystemRegion::unlink() {
  if (unlinked_) return;
  if (::shm_unlink(key_.c_str()) != 0 && errno != ENOENT) {
    const int err = errno;
    throw SharedMemoryError("cannot unlink shared memory region '" + key_ +
                            "': shm_unlink failed: " + errno_with_number(err));
  }
  unlinked_ = true;
}

void check_range(const std::string& what, std::uint64_t offset, std::uint64_t n,
                 std::uint64_t region_size) {
  // Written so that nothing overflows: offset + n is computed only once it fits.
  if (offset <= region_size && n <= region_size - offset) return;
  std::string detail;
  if (offset > region_size) {
    detail = "the offset is past its end";
  } else if (n > UINT64_MAX - offset) {
    detail = "offset + size overflows 64 bits";
  } else {
    detail = "they would end at byte " + std::to_string(offset + n);
  }
  throw SharedMemoryError(bytes_text(n) + " at offset " + std::to_string(offset) +
                          " do not fit in " + what + " of " + bytes_text(region_size) + " (" +
                          detail + ")");
}

std::uint8_t* SystemRegion::span(std::uint64_t offset, std::uint64_t n) const {
  check_range("shared memory region '" + key_ + "'", offset, n, size_);
  return data_ + offset;
}

void SystemRegion::write(std::uint64_t offset, const void* src, std::uint64_t n) {
  std::uint8_t* dst = span(offset, n);
  if (n) std::memcpy(dst, src, n);
}

std::string_view ElementReader::next(std::size_t index) {
  constexpr std::size_t kPrefixBytes = 4;
  const std::size_t left = size_ - offset_;
  const std::uint64_t at = base_offset_ + offset_;
  if (left < kPrefixBytes) {
    throw DecodeError("BYTES element " + std::to_string(index) + " at byte " + std::to_string(at) +
                      " of " + what_ + ": its 4-byte length prefix needs more than the " +
                      std::to_string(left) + " bytes left");
  }
  // Read once into a local: the memory may change under us.
  std::uint8_t prefix[kPrefixBytes];
  std::memcpy(prefix, data_ + offset_, kPrefixBytes);
  const std::uint32_t length = static_cast<std::uint32_t>(prefix[0]) |
                               static_cast<std::uint32_t>(prefix[1]) << 8 |
                               static_cast<std::uint32_t>(prefix[2]) << 16 |
                               static_cast<std::uint32_t>(prefix[3]) << 24;
  if (length > left - kPrefixBytes) {
    throw DecodeError("BYTES element " + std::to_string(index) + " at byte " + std::to_string(at) +
                      " of " + what_ + ": length prefix " + std::to_string(length) +
                      " exceeds the " + std::to_string(left - kPrefixBytes) + " bytes left");
  }
  std::string_view element(reinterpret_cast<const char*>(data_ + offset_ + kPrefixBytes), length);
  offset_ += kPrefixBytes + length;
  return element;
}

}  // namespace tritonfast::shm
