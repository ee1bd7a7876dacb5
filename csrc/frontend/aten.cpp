// The library's ops on torch's C++ ABI, CPU part (the _C library): the op
// definitions and their CPU kernels. The CUDA part (aten_cuda.cpp, the
// _C_cuda library) adds the CUDA kernels and the CUDA host ops.
#include "../module.h"
#include "../schema.h"
#include "aten.h"

#include <torch/library.h>

namespace vllm_moe_align {
namespace {

using at::Tensor;

TORCH_LIBRARY(vllm_moe_align, m) {
  m.def(schema::kAlignOut);
  m.def(schema::kAlign);
  m.def(schema::kGlobalizeOut);
}

TORCH_LIBRARY_IMPL(vllm_moe_align, CPU, m) {
  m.impl("moe_align_block_size_out", &align_out<Tensor, run_align_cpu<Tensor>>);
  m.impl("moe_align_block_size", &align_alloc<Tensor, run_align_cpu<Tensor>>);
  m.impl("fused_globalize_align_block_size_out",
         &globalize_out<Tensor, run_globalize_cpu<Tensor>>);
}

}  // namespace
}  // namespace vllm_moe_align

VLLM_MOE_ALIGN_PYTHON_MODULE(_C)
