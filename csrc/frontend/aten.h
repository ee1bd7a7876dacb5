// torch's C++ ABI (at::Tensor) as the op bodies (../ops.h) see it:
// TensorTraits<at::Tensor>. Libraries built on it load only with the torch
// release they were built against; setup.py builds this frontend for torch
// releases older than the stable ABI's floor (2.11), or when asked to
// (VLLM_MOE_ALIGN_ABI=aten). aten.cpp and aten_cuda.cpp register the ops.
// Errors are c10's typed errors (ValueError, TypeError, NotImplementedError
// in Python: ../errors.h).
#pragma once

#include "../ops.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
#include <ATen/cuda/CUDAContext.h>
#endif

namespace vllm_moe_align {

template <>
struct TensorTraits<at::Tensor> {
  using T = at::Tensor;
  static int dtype(const T& t) { return static_cast<int>(t.scalar_type()); }
  static std::string dtype_name(const T& t) { return c10::toString(t.scalar_type()); }
  static bool same_device(const T& a, const T& b) { return a.device() == b.device(); }
  static std::string device_name(const T& t) { return t.device().str(); }
  static int64_t numel(const T& t) { return t.numel(); }
  static int64_t dim(const T& t) { return t.dim(); }
  static int64_t size(const T& t, int64_t d) { return t.size(d); }
  static int64_t stride(const T& t, int64_t d) { return t.stride(d); }
  static bool is_contiguous(const T& t) { return t.is_contiguous(); }
  static void* data(const T& t) { return t.data_ptr(); }
  static T contiguous(const T& t) { return t.contiguous(); }
  static T to_int32(const T& t) { return t.to(at::kInt); }
  static T empty_int32(const T& like, std::initializer_list<int64_t> sizes) {
    return at::empty(sizes, like.options().dtype(at::kInt));
  }
  static int device_index(const T& t) { return t.get_device(); }
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  static cudaStream_t cuda_stream(int device) {
    return at::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
  }
#endif
};

}  // namespace vllm_moe_align

