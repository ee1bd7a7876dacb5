// The checks that need no tensor (declared and described in checks.h).
#include "checks.h"

namespace vllm_moe_align {

void check_experts_and_block_size(int64_t num_experts, int64_t block_size) {
  VLLM_MOE_ALIGN_CHECK_VALUE(num_experts >= 1 && num_experts <= kMaxExperts,
                             "num_experts must be in [1, ", kMaxExperts, "], got ", num_experts);
  VLLM_MOE_ALIGN_CHECK_VALUE(block_size >= 1 && block_size <= kMaxBlockSize,
                             "block_size must be in [1, ", kMaxBlockSize, "], got ", block_size);
}

void check_max_num_tokens_padded(int64_t max_num_tokens_padded, int64_t numel,
                                 int64_t num_experts, int64_t block_size) {
  const int64_t need = max_padded_routes(numel, num_experts, block_size);
  VLLM_MOE_ALIGN_CHECK_VALUE(max_num_tokens_padded >= need && max_num_tokens_padded <= INT32_MAX,
                             "max_num_tokens_padded must be in [", need, ", 2^31) for ", numel,
                             " routes, num_experts=", num_experts, ", block_size=", block_size,
                             "; got ", max_num_tokens_padded);
}

void check_launch_plan_args(int64_t numel, int64_t num_experts, int64_t block_size,
                            int64_t sorted_size, int64_t num_sms, int64_t smem_optin_bytes) {
  VLLM_MOE_ALIGN_CHECK_VALUE(numel >= 0 && numel <= kMaxRoutes, "numel must be in [0, ",
                             kMaxRoutes, "], got ", numel);
  check_experts_and_block_size(num_experts, block_size);
  VLLM_MOE_ALIGN_CHECK_VALUE(sorted_size >= 0 && sorted_size <= INT32_MAX,
                             "sorted_size must be in [0, 2^31), got ", sorted_size);
  VLLM_MOE_ALIGN_CHECK_VALUE(num_sms >= 1 && num_sms <= 4096,
                             "num_sms must be in [1, 4096], got ", num_sms);
  VLLM_MOE_ALIGN_CHECK_VALUE(smem_optin_bytes >= 0 && smem_optin_bytes <= INT32_MAX,
                             "smem_optin_bytes must be in [0, 2^31), got ", smem_optin_bytes);
}

}  // namespace vllm_moe_align
