// The ops on PyTorch's stable ABI (torch::stable::Tensor, STABLE_TORCH_LIBRARY,
// the C shim): one library loads on every torch from the floor setup.py
// builds it for (TORCH_TARGET_VERSION, 2.11) upward. The default frontend.
//
// The stable ABI carries C++ exceptions as std:: types: std::invalid_argument
// reaches Python as ValueError, other std::exceptions as RuntimeError. There
// is no TypeError, so a wrong dtype is a ValueError at the op level; the
// package's Python functions raise TypeError for it (_ops.typed_error).
#include "../cuda_host.h"
#include "../ops.h"
#include "../schema.h"

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
// The C shim declares its CUDA functions (the current stream) under USE_CUDA.
#define USE_CUDA
#endif
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

#include <stdexcept>

namespace vllm_moe_align {

void value_error(const std::string& message) { throw std::invalid_argument(message); }
void type_error(const std::string& message) { throw std::invalid_argument(message); }
void not_implemented(const std::string& message) { throw std::runtime_error(message); }
void runtime_error(const std::string& message) { throw std::runtime_error(message); }

namespace {

// Checks a C shim call (they return an error code instead of throwing).
void check_shim(AOTITorchError err, const char* call) {
  if (err != AOTI_TORCH_SUCCESS) runtime_error(cat(call, " failed"));
}

// torch's names of the device types a tensor is likely to be on (messages).
std::string device_type_name(int32_t type) {
  if (type == aoti_torch_device_type_cpu()) return "cpu";
  if (type == aoti_torch_device_type_cuda()) return "cuda";
  if (type == aoti_torch_device_type_meta()) return "meta";
  if (type == aoti_torch_device_type_xpu()) return "xpu";
  if (type == aoti_torch_device_type_mps()) return "mps";
  return "device type " + str(type);
}

}  // namespace

template <>
struct TensorTraits<torch::stable::Tensor> {
  using T = torch::stable::Tensor;
  static int dtype(const T& t) {
    int32_t code = -1;
    check_shim(aoti_torch_get_dtype(t.get(), &code), "aoti_torch_get_dtype");
    return code;
  }
  static std::string dtype_name(const T& t) {
    return torch::headeronly::toString(t.scalar_type());
  }
  static int32_t device_type(const T& t) {
    int32_t type = -1;
    check_shim(aoti_torch_get_device_type(t.get(), &type), "aoti_torch_get_device_type");
    return type;
  }
  static bool same_device(const T& a, const T& b) {
    return device_type(a) == device_type(b) && a.get_device_index() == b.get_device_index();
  }
  static std::string device_name(const T& t) {
    const std::string type = device_type_name(device_type(t));
    const int32_t index = t.get_device_index();
    return index < 0 ? type : type + ":" + str(index);
  }
  static int64_t numel(const T& t) { return t.numel(); }
  static int64_t dim(const T& t) { return t.dim(); }
  static int64_t size(const T& t, int64_t d) { return t.size(d); }
  static bool is_contiguous(const T& t) { return t.is_contiguous(); }
  static void* data(const T& t) { return t.data_ptr(); }
  static T contiguous(const T& t) { return t.is_contiguous() ? t : torch::stable::contiguous(t); }
  static T to_int32(const T& t) { return torch::stable::to(t, torch::headeronly::ScalarType::Int); }
  static T empty_int32(const T& like, std::initializer_list<int64_t> sizes) {
    // aoti_torch_empty_strided: one allocation, no trip through the dispatcher.
    int64_t shape[2] = {0, 0}, strides[2] = {1, 1};
    const int64_t ndim = static_cast<int64_t>(sizes.size());
    int64_t d = 0;
    for (int64_t s : sizes) shape[d++] = s;
    if (ndim == 2) strides[0] = shape[1];
    AtenTensorHandle out = nullptr;
    check_shim(aoti_torch_empty_strided(ndim, shape, strides, aoti_torch_dtype_int32(),
                                        device_type(like), like.get_device_index(), &out),
               "aoti_torch_empty_strided");
    return T(out);
  }
  static int device_index(const T& t) { return t.get_device_index(); }
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  static cudaStream_t cuda_stream(int device) {
    void* stream = nullptr;
    check_shim(aoti_torch_get_current_cuda_stream(device, &stream),
               "aoti_torch_get_current_cuda_stream");
    return static_cast<cudaStream_t>(stream);
  }
#endif
};

}  // namespace vllm_moe_align

namespace vllm_moe_align {
namespace {

using torch::stable::Tensor;

STABLE_TORCH_LIBRARY(vllm_moe_align, m) {
  m.def(schema::kAlignOut);
  m.def(schema::kAlign);
  m.def(schema::kLaunchPlan);
  m.def(schema::kPreload);
  m.def(schema::kArchs);
}

STABLE_TORCH_LIBRARY_IMPL(vllm_moe_align, CPU, m) {
  m.impl("moe_align_block_size_out", TORCH_BOX(&align_out_cpu<Tensor>));
  m.impl("moe_align_block_size", TORCH_BOX((&align_alloc<Tensor, align_out_cpu<Tensor>>)));
}

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
STABLE_TORCH_LIBRARY_IMPL(vllm_moe_align, CUDA, m) {
  m.impl("moe_align_block_size_out", TORCH_BOX(&align_out_cuda<Tensor>));
  m.impl("moe_align_block_size", TORCH_BOX((&align_alloc<Tensor, align_out_cuda<Tensor>>)));
}
#endif

// No tensor arguments, so no backend to dispatch on: one kernel for all.
STABLE_TORCH_LIBRARY_IMPL(vllm_moe_align, CompositeExplicitAutograd, m) {
  m.impl("cuda_archs", TORCH_BOX(&cuda_archs));
  m.impl("preload_cuda_kernels", TORCH_BOX(&preload_cuda_kernels));
  m.impl("cuda_launch_plan", TORCH_BOX(&cuda_launch_plan));
}

}  // namespace
}  // namespace vllm_moe_align
