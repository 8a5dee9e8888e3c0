// The checks shared by the C++ test suites (csrc/tests/*.cpp): counted CHECKs
// that report and go on, and EXPECT_THROW for the exception type and message.
// Each suite is one translation unit; main() reports g_checks / g_failures.
#pragma once

#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++g_checks;                                                                     \
    if (!(cond)) {                                                                  \
      ++g_failures;                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

#define CHECK_EQ(a, b)                                                                      \
  do {                                                                                      \
    ++g_checks;                                                                             \
    const auto va_ = (a);                                                                   \
    const auto vb_ = (b);                                                                   \
    if (!(va_ == vb_)) {                                                                    \
      ++g_failures;                                                                         \
      std::fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s\n  left:  %s\n  right: %s\n", \
                   __FILE__, __LINE__, #a, #b, show(va_).c_str(), show(vb_).c_str());       \
    }                                                                                       \
  } while (0)

std::string show(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    }
  }
  return out + "\"";
}
[[maybe_unused]] std::string show(std::string_view s) { return show(std::string(s)); }
std::string show(const char* s) { return show(std::string(s)); }
template <typename T>
std::string show(const T& v) {
  if constexpr (std::is_arithmetic_v<T>) {
    return std::to_string(v);
  } else {
    return "<value>";
  }
}

// Runs f and checks that it throws E (or a subclass) whose message contains
// every one of `needles`.
template <typename E, typename F>
void expect_throw(const char* file, int line, F f, const std::vector<std::string>& needles) {
  ++g_checks;
  try {
    f();
  } catch (const E& e) {
    for (const auto& needle : needles) {
      if (std::string(e.what()).find(needle) == std::string::npos) {
        ++g_failures;
        std::fprintf(stderr, "%s:%d: message %s lacks %s\n", file, line, show(e.what()).c_str(),
                     show(needle).c_str());
      }
    }
    return;
  } catch (const std::exception& e) {
    ++g_failures;
    std::fprintf(stderr, "%s:%d: wrong exception type, message %s\n", file, line,
                 show(e.what()).c_str());
    return;
  }
  ++g_failures;
  std::fprintf(stderr, "%s:%d: no exception (expected %s)\n", file, line,
               needles.empty() ? "" : show(needles[0]).c_str());
}
#define EXPECT_THROW(E, expr, ...) \
  expect_throw<E>(__FILE__, __LINE__, [&]() { expr; }, std::vector<std::string>{__VA_ARGS__})

}  // namespace
