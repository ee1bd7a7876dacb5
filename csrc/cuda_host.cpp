// The ops that ask about the CUDA backend from the host: cuda_archs,
// preload_cuda_kernels, cuda_launch_plan (schemas in schema.cpp). Built into
// every library: a CPU-only build answers "" and NotImplementedError.
// setup.py defines VLLM_MOE_ALIGN_CUDA_ARCHS (the archs as one token, e.g.
// 7.5_8.0_9.0a) exactly when it builds the CUDA kernels.
#include "checks.h"

#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/kernels.h"
#endif

namespace vllm_moe_align {
namespace {

#define VLLM_MOE_ALIGN_STR2(x) #x
#define VLLM_MOE_ALIGN_STR(x) VLLM_MOE_ALIGN_STR2(x)

std::string cuda_archs() {
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  std::string archs = VLLM_MOE_ALIGN_STR(VLLM_MOE_ALIGN_CUDA_ARCHS);
  std::replace(archs.begin(), archs.end(), '_', ' ');
  return archs;
#else
  return "";
#endif
}

void preload_cuda_kernels(int64_t device) {
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  C10_CUDA_CHECK(preload_kernels());
#else
  (void)device;
  C10_THROW_ERROR(NotImplementedError, "this build has no CUDA kernels");
#endif
}

std::vector<int64_t> cuda_launch_plan(int64_t numel, int64_t num_experts, int64_t block_size,
                                      int64_t sorted_size, bool map_while_counting,
                                      int64_t num_sms, int64_t smem_optin_bytes) {
#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
  check_launch_plan_args(numel, num_experts, block_size, sorted_size, num_sms,
                         smem_optin_bytes);
  const LaunchPlan l = plan_launch(static_cast<int>(numel), static_cast<int>(num_experts),
                                   static_cast<int>(block_size), static_cast<int>(sorted_size),
                                   map_while_counting, static_cast<int>(num_sms),
                                   static_cast<int>(smem_optin_bytes));
  return {static_cast<int64_t>(l.regime), kernel_launches(l.regime), l.num_tiles, l.tile_routes,
          l.threads, l.hist_warps, static_cast<int64_t>(l.smem_bytes),
          static_cast<int64_t>(l.scratch_ints), l.fits ? 1 : 0};
#else
  (void)numel, (void)num_experts, (void)block_size, (void)sorted_size;
  (void)map_while_counting, (void)num_sms, (void)smem_optin_bytes;
  C10_THROW_ERROR(NotImplementedError, "this build has no CUDA kernels");
#endif
}

}  // namespace

// No tensor arguments, so no backend to dispatch on: one kernel for all.
TORCH_LIBRARY_IMPL(vllm_moe_align, CompositeExplicitAutograd, m) {
  m.impl("cuda_archs", &cuda_archs);
  m.impl("preload_cuda_kernels", &preload_cuda_kernels);
  m.impl("cuda_launch_plan", &cuda_launch_plan);
}

}  // namespace vllm_moe_align
