// How the library reports a bad argument or a failed call, independent of the
// torch ABI it is built for. The checks (checks.h) and the torch-free host
// code (cuda_host.cpp, cuda/launch.cpp) call these; the frontend linked into
// the library (frontend/stable.cpp or frontend/aten.cpp) defines them:
//
//   error            C++ ABI frontend        stable-ABI frontend
//   value_error      ValueError              ValueError (std::invalid_argument)
//   type_error       TypeError               ValueError (std::invalid_argument):
//                                            the stable ABI has no TypeError;
//                                            the package's Python functions
//                                            raise TypeError for it (_ops.py)
//   not_implemented  NotImplementedError     RuntimeError
//   runtime_error    RuntimeError            RuntimeError
//
// Every message names the offending argument.
#pragma once

#include <cstdint>
#include <string>

namespace vllm_moe_align {

[[noreturn]] void value_error(const std::string& message);
[[noreturn]] void type_error(const std::string& message);
[[noreturn]] void not_implemented(const std::string& message);
[[noreturn]] void runtime_error(const std::string& message);

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
