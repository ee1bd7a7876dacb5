// How the library reports a bad argument or a failed call. The checks
// (checks.h) and the host code (cuda/cuda_host.cpp, cuda/launch.cpp, the CPU
// kernel) call these, whichever torch ABI the library is built for; setup.py
// defines VLLM_MOE_ALIGN_STABLE_ABI for the stable one:
//
//   error            C++ ABI frontend        stable-ABI frontend
//   value_error      ValueError              ValueError (std::invalid_argument)
//   type_error       TypeError               ValueError (std::invalid_argument)
//                                            whose message starts with
//                                            kTypeErrorTag: the stable ABI has
//                                            no TypeError, so the package's
//                                            Python functions turn a tagged
//                                            ValueError into a TypeError
//                                            (_ops/checks.py, TYPE_ERROR_TAG)
//   runtime_error    RuntimeError            RuntimeError
//
// Every message names the offending argument.
#pragma once

#include <cstdint>
#include <string>

#ifdef VLLM_MOE_ALIGN_STABLE_ABI
#include <stdexcept>
#else
#include <c10/util/Exception.h>
#endif

namespace vllm_moe_align {

// The one mark of a type error on the stable ABI; Python's TYPE_ERROR_TAG
// (vllm_moe_align_plugin/_ops/checks.py) is the same text.
inline constexpr char kTypeErrorTag[] = "TypeError: ";

#ifdef VLLM_MOE_ALIGN_STABLE_ABI
[[noreturn]] inline void value_error(const std::string& m) { throw std::invalid_argument(m); }
[[noreturn]] inline void type_error(const std::string& m) {
  throw std::invalid_argument(kTypeErrorTag + m);
}
[[noreturn]] inline void runtime_error(const std::string& m) { throw std::runtime_error(m); }
#else
[[noreturn]] inline void value_error(const std::string& m) { C10_THROW_ERROR(ValueError, m); }
[[noreturn]] inline void type_error(const std::string& m) { C10_THROW_ERROR(TypeError, m); }
[[noreturn]] inline void runtime_error(const std::string& m) { C10_THROW_ERROR(Error, m); }
#endif

// Messages are assembled from strings only: an extension compiled with newer
// libstdc++ headers than the process's libstdc++ crashed when iostreams
// formatted an integer (GCC 13 headers against an older runtime);
// std::to_string does not go through iostreams.
inline std::string str(int64_t v) { return std::to_string(v); }
inline std::string str(int v) { return std::to_string(v); }
inline std::string str(const char* s) { return s; }
inline const std::string& str(const std::string& s) { return s; }

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  ((out += str(parts)), ...);
  return out;
}

}  // namespace vllm_moe_align

// Throw when `cond` is false; the message parts are only formatted then.
#define VLLM_MOE_ALIGN_CHECK_VALUE(cond, ...) \
  do {                                        \
    if (!(cond)) ::vllm_moe_align::value_error(::vllm_moe_align::cat(__VA_ARGS__)); \
  } while (0)
#define VLLM_MOE_ALIGN_CHECK_TYPE(cond, ...) \
  do {                                       \
    if (!(cond)) ::vllm_moe_align::type_error(::vllm_moe_align::cat(__VA_ARGS__)); \
  } while (0)
