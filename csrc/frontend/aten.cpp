// The ops on torch's C++ ABI (at::Tensor, TORCH_LIBRARY): a library that
// loads only with the torch release it was built against. setup.py builds
// this frontend for torch releases older than the stable ABI's floor (2.11),
// or when asked to (VLLM_MOE_ALIGN_ABI=aten). Errors are c10's typed errors
// (ValueError, TypeError, NotImplementedError in Python).
#include "../cuda_host.h"
#include "../ops.h"
#include "../schema.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
#include <ATen/cuda/CUDAContext.h>
#endif

namespace vllm_moe_align {

void value_error(const std::string& message) { C10_THROW_ERROR(ValueError, message); }
void type_error(const std::string& message) { C10_THROW_ERROR(TypeError, message); }
void not_implemented(const std::string& message) {
  C10_THROW_ERROR(NotImplementedError, message);
}
void runtime_error(const std::string& message) { C10_THROW_ERROR(Error, message); }

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

namespace vllm_moe_align {
namespace {

using at::Tensor;
using OptTensor = std::optional<at::Tensor>;

TORCH_LIBRARY(vllm_moe_align, m) {
  m.def(schema::kAlignOut);
  m.def(schema::kAlign);
  m.def(schema::kLaunchPlan);
  m.def(schema::kPreload);
  m.def(schema::kArchs);
}

TORCH_LIBRARY_IMPL(vllm_moe_align, CPU, m) {
  m.impl("moe_align_block_size_out", &align_out_cpu<Tensor>);
  m.impl("moe_align_block_size", &align_alloc<Tensor, align_out_cpu<Tensor>>);
}

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
TORCH_LIBRARY_IMPL(vllm_moe_align, CUDA, m) {
  m.impl("moe_align_block_size_out", &align_out_cuda<Tensor>);
  m.impl("moe_align_block_size", &align_alloc<Tensor, align_out_cuda<Tensor>>);
}
#endif

// No tensor arguments, so no backend to dispatch on: one kernel for all.
TORCH_LIBRARY_IMPL(vllm_moe_align, CompositeExplicitAutograd, m) {
  m.impl("cuda_archs", &cuda_archs);
  m.impl("preload_cuda_kernels", &preload_cuda_kernels);
  m.impl("cuda_launch_plan", &cuda_launch_plan);
}

}  // namespace
}  // namespace vllm_moe_align
