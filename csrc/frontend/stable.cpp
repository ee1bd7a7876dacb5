// The library's ops on PyTorch's stable ABI, CPU part (the _C library): the
// op definitions and their CPU kernels. The CUDA part (stable_cuda.cpp, the
// _C_cuda library) adds the CUDA kernels and the CUDA host ops.
#include "../module.h"
#include "../schema.h"
#include "stable.h"

#include <torch/csrc/stable/library.h>

namespace vllm_moe_align {
namespace {

using torch::stable::Tensor;

STABLE_TORCH_LIBRARY(vllm_moe_align, m) {
  m.def(schema::kAlignOut);
  m.def(schema::kAlign);
  m.def(schema::kGlobalizeOut);
}

STABLE_TORCH_LIBRARY_IMPL(vllm_moe_align, CPU, m) {
  m.impl("moe_align_block_size_out", TORCH_BOX((&align_out<Tensor, run_align_cpu<Tensor>>)));
  m.impl("moe_align_block_size", TORCH_BOX((&align_alloc<Tensor, run_align_cpu<Tensor>>)));
  m.impl("fused_globalize_align_block_size_out",
         TORCH_BOX((&globalize_out<Tensor, run_globalize_cpu<Tensor>>)));
}

}  // namespace
}  // namespace vllm_moe_align

VLLM_MOE_ALIGN_PYTHON_MODULE(_C)
