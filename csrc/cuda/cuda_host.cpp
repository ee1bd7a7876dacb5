// The host-side CUDA ops (cuda_host.h).
#include "cuda_host.h"

#include "../checks.h"
#include "launch.h"

#include <algorithm>

namespace vllm_moe_align {

#define VLLM_MOE_ALIGN_STR2(x) #x
#define VLLM_MOE_ALIGN_STR(x) VLLM_MOE_ALIGN_STR2(x)

std::string cuda_archs() {
  std::string archs = VLLM_MOE_ALIGN_STR(VLLM_MOE_ALIGN_CUDA_ARCHS);
  std::replace(archs.begin(), archs.end(), '_', ' ');
  return archs;
}

void preload_cuda_kernels(int64_t device) {
  int count = 0;
  check_cuda(cudaGetDeviceCount(&count));
  VLLM_MOE_ALIGN_CHECK_VALUE(device >= 0 && device < count, "device must be in [0, ", count,
                             "), got ", device);
  const DeviceGuard guard(static_cast<int>(device));
  check_cuda(preload_kernels());
}

std::vector<int64_t> cuda_launch_plan(int64_t numel, int64_t num_experts, int64_t block_size,
                                      int64_t sorted_size, bool map_while_counting,
                                      int64_t num_sms, int64_t smem_optin_bytes) {
  check_launch_plan_args(numel, num_experts, block_size, sorted_size, num_sms, smem_optin_bytes);
  const LaunchPlan l = plan_launch(static_cast<int>(numel), static_cast<int>(num_experts),
                                   static_cast<int>(block_size), static_cast<int>(sorted_size),
                                   map_while_counting, static_cast<int>(num_sms),
                                   static_cast<int>(smem_optin_bytes));
  return {static_cast<int64_t>(l.regime), kernel_launches(l.regime), l.num_tiles, l.tile_routes,
          l.threads, l.hist_warps, static_cast<int64_t>(l.smem_bytes),
          static_cast<int64_t>(l.scratch_ints), l.fits ? 1 : 0};
}

std::vector<int64_t> cuda_globalize_plan(int64_t numel, int64_t local_num_experts,
                                         int64_t block_size, int64_t num_sms,
                                         int64_t smem_optin_bytes) {
  GlobalizeProblem g{};
  g.numel = numel;
  g.local_num_experts = local_num_experts;
  g.block_size = block_size;
  check_globalize_plan_args(g, num_sms, smem_optin_bytes);
  const DeviceLimits limits{static_cast<int>(num_sms), static_cast<int>(smem_optin_bytes)};
  const GlobalizePlan gp = plan_globalize_call(g, limits);
  if (gp.fused) return {1, 1, gp.threads, static_cast<int64_t>(gp.smem_bytes), gp.ctas, -1, 0};
  const int64_t launches = kernel_launches(gp.align.regime) + (gp.folded ? 0 : 1);
  return {0, launches, gp.threads, 0, gp.ctas, static_cast<int64_t>(gp.align.regime),
          gp.folded ? 1 : 0};
}

bool cuda_dependent_launch(std::optional<bool> enabled) {
  if (enabled.has_value()) set_dependent_launch(*enabled);
  return dependent_launch_asked();
}

}  // namespace vllm_moe_align
