// PyTorch's stable ABI (torch::stable::Tensor, the C shim) as the op bodies
// (../ops.h) see it: TensorTraits<torch::stable::Tensor>. Libraries built on
// it load on every torch from the floor setup.py builds them for
// (TORCH_TARGET_VERSION, 2.11) upward. The default frontend; stable.cpp and
// stable_cuda.cpp register the ops.
//
// The stable ABI carries C++ exceptions as std:: types (../errors.h):
// std::invalid_argument reaches Python as ValueError, other std::exceptions as
// RuntimeError.
#pragma once

#include "../ops.h"

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
// The C shim declares its CUDA functions (the current stream) under USE_CUDA.
#define USE_CUDA
#endif
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

namespace vllm_moe_align {
namespace stable_detail {

// Checks a C shim call (they return an error code instead of throwing).
inline void check_shim(AOTITorchError err, const char* call) {
  if (err != AOTI_TORCH_SUCCESS) runtime_error(cat(call, " failed"));
}

// torch's names of the device types a tensor is likely to be on (messages).
inline std::string device_type_name(int32_t type) {
  if (type == aoti_torch_device_type_cpu()) return "cpu";
  if (type == aoti_torch_device_type_cuda()) return "cuda";
  if (type == aoti_torch_device_type_meta()) return "meta";
  if (type == aoti_torch_device_type_xpu()) return "xpu";
  if (type == aoti_torch_device_type_mps()) return "mps";
  return "device type " + str(type);
}

}  // namespace stable_detail

template <>
struct TensorTraits<torch::stable::Tensor> {
  using T = torch::stable::Tensor;
  static int dtype(const T& t) {
    int32_t code = -1;
    stable_detail::check_shim(aoti_torch_get_dtype(t.get(), &code), "aoti_torch_get_dtype");
    return code;
  }
  static std::string dtype_name(const T& t) {
    return torch::headeronly::toString(t.scalar_type());
  }
  static int32_t device_type(const T& t) {
    int32_t type = -1;
    stable_detail::check_shim(aoti_torch_get_device_type(t.get(), &type),
                              "aoti_torch_get_device_type");
    return type;
  }
  static bool same_device(const T& a, const T& b) {
    return device_type(a) == device_type(b) && a.get_device_index() == b.get_device_index();
  }
  static std::string device_name(const T& t) {
    const std::string type = stable_detail::device_type_name(device_type(t));
    const int32_t index = t.get_device_index();
    return index < 0 ? type : type + ":" + str(index);
  }
  static int64_t numel(const T& t) { return t.numel(); }
  static int64_t dim(const T& t) { return t.dim(); }
  static int64_t size(const T& t, int64_t d) { return t.size(d); }
  static int64_t stride(const T& t, int64_t d) { return t.stride(d); }
  static bool is_contiguous(const T& t) { return t.is_contiguous(); }
  static void* data(const T& t) { return t.data_ptr(); }
  static T contiguous(const T& t) { return t.is_contiguous() ? t : torch::stable::contiguous(t); }
  static T to_int32(const T& t) { return torch::stable::to(t, torch::headeronly::ScalarType::Int); }
  // One or two dimensions (the ops' outputs and scratch), contiguous.
  static T empty_int32(const T& like, std::initializer_list<int64_t> sizes) {
    // aoti_torch_empty_strided: one allocation, no trip through the dispatcher.
    if (sizes.size() < 1 || sizes.size() > 2) runtime_error("empty_int32: 1 or 2 dimensions");
    int64_t shape[2] = {0, 0}, strides[2] = {1, 1};
    const int64_t ndim = static_cast<int64_t>(sizes.size());
    int64_t d = 0;
    for (int64_t s : sizes) shape[d++] = s;
    if (ndim == 2) strides[0] = shape[1];
    AtenTensorHandle out = nullptr;
    stable_detail::check_shim(
        aoti_torch_empty_strided(ndim, shape, strides, aoti_torch_dtype_int32(), device_type(like),
                                 like.get_device_index(), &out),
        "aoti_torch_empty_strided");
    return T(out);
  }
  static int device_index(const T& t) { return t.get_device_index(); }
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  static cudaStream_t cuda_stream(int device) {
    void* stream = nullptr;
    stable_detail::check_shim(aoti_torch_get_current_cuda_stream(device, &stream),
                              "aoti_torch_get_current_cuda_stream");
    return static_cast<cudaStream_t>(stream);
  }
#endif
};

}  // namespace vllm_moe_align

