// The library's ops on PyTorch's stable ABI, CUDA part (the _C_cuda library,
// loaded after _C): the CUDA kernels of the align and globalize ops, and the
// CUDA host ops, which only a build with CUDA kernels has.
#include "../cuda/cuda_host.h"
#include "../module.h"
#include "../schema.h"
#include "stable.h"

#include <torch/csrc/stable/library.h>

namespace vllm_moe_align {
namespace {

using torch::stable::Tensor;

STABLE_TORCH_LIBRARY_FRAGMENT(vllm_moe_align, m) {
  m.def(schema::kLaunchPlan);
  m.def(schema::kGlobalizePlan);
  m.def(schema::kPreload);
  m.def(schema::kArchs);
  m.def(schema::kDependentLaunch);
}

STABLE_TORCH_LIBRARY_IMPL(vllm_moe_align, CUDA, m) {
  m.impl("moe_align_block_size_out", TORCH_BOX((&align_out<Tensor, run_align_cuda<Tensor>>)));
  m.impl("moe_align_block_size", TORCH_BOX((&align_alloc<Tensor, run_align_cuda<Tensor>>)));
  m.impl("fused_globalize_align_block_size_out",
         TORCH_BOX((&globalize_out<Tensor, run_globalize_cuda<Tensor>>)));
}

// No tensor arguments, so no backend to dispatch on: one kernel for all.
STABLE_TORCH_LIBRARY_IMPL(vllm_moe_align, CompositeExplicitAutograd, m) {
  m.impl("cuda_archs", TORCH_BOX(&cuda_archs));
  m.impl("preload_cuda_kernels", TORCH_BOX(&preload_cuda_kernels));
  m.impl("cuda_launch_plan", TORCH_BOX(&cuda_launch_plan));
  m.impl("cuda_globalize_plan", TORCH_BOX(&cuda_globalize_plan));
  m.impl("cuda_dependent_launch", TORCH_BOX(&cuda_dependent_launch));
}

}  // namespace
}  // namespace vllm_moe_align

VLLM_MOE_ALIGN_PYTHON_MODULE(_C_cuda)
