// The ops that ask about the CUDA backend from the host (schemas in
// ../schema.h): only the CUDA library (_C_cuda) has them. setup.py defines
// VLLM_MOE_ALIGN_CUDA_ARCHS, the archs as one token (e.g. 7.5_8.0_9.0a), for
// that library.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vllm_moe_align {

std::string cuda_archs();
void preload_cuda_kernels(int64_t device);
std::vector<int64_t> cuda_launch_plan(int64_t numel, int64_t num_experts, int64_t block_size,
                                      int64_t sorted_size, bool map_while_counting,
                                      int64_t num_sms, int64_t smem_optin_bytes);
std::vector<int64_t> cuda_globalize_plan(int64_t numel, int64_t local_num_experts,
                                         int64_t block_size, int64_t num_sms,
                                         int64_t smem_optin_bytes);
bool cuda_dependent_launch(std::optional<bool> enabled);

}  // namespace vllm_moe_align
