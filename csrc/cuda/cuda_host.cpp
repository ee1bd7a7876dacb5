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

}  // namespace vllm_moe_align
