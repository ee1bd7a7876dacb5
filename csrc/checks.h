// Shared declarations of the moe_align_block_size op: argument checks and the
// per-backend entry points. The schema itself lives in bindings.cpp.
#pragma once

#include <torch/library.h>
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace vllm_moe_align {

// Limits enforced on every call. Within them every index the kernels compute
// (route index, position in sorted_token_ids, block index) fits in int32:
// numel + num_experts * (block_size - 1) < 2^30 + 2^12 * 2^10 < 2^31.
constexpr int64_t kMaxRoutes = int64_t{1} << 30;
constexpr int64_t kMaxExperts = 4096;
constexpr int64_t kMaxBlockSize = 1024;

// Everything a backend needs for one call, after validation.
struct AlignProblem {
  int64_t numel;            // number of routes (topk_ids.numel())
  int64_t num_experts;      // E: bins of the histogram
  int64_t block_size;       // B
  int64_t sorted_size;      // sorted_token_ids.numel(): every slot is written
  int64_t expert_ids_size;  // expert_ids.numel(): every slot is written
  bool has_map;             // expert_map given
  bool map_while_counting;  // true: route ids go through expert_map and -1 drops
                            // them; false: expert_ids is mapped after the fact
  int64_t expert_ids_tail;  // value of expert_ids past the last used block
                            // (before the output mapping, if any)
  bool has_scatter_idx;
};

// The limits on num_experts and block_size (ValueError naming the argument),
// shared by the op's checks and every other entry point that takes them.
void check_experts_and_block_size(int64_t num_experts, int64_t block_size);

// Validates the out-variant's arguments (dtypes, devices, sizes, limits) with
// errors that name the offending argument, and returns the problem description.
AlignProblem check_align_args(const at::Tensor& topk_ids, int64_t num_experts,
                              int64_t block_size,
                              const at::Tensor& sorted_token_ids,
                              const at::Tensor& expert_ids,
                              const at::Tensor& num_tokens_post_pad,
                              const std::optional<at::Tensor>& expert_map,
                              const std::optional<at::Tensor>& scatter_idx,
                              bool ignore_invalid_experts,
                              int64_t expert_ids_tail);

// Largest num_tokens_post_pad any input of this shape can produce: buffers of
// at least this size are enough for the op never to write out of bounds.
int64_t max_padded_routes(int64_t numel, int64_t num_experts,
                          int64_t block_size);

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
// CUDA builds: loads the CUDA kernels on `device` ahead of the first call
// (csrc/cuda/moe_align_cuda.cpp). Throws c10::Error on a CUDA error.
void preload_cuda_kernels(int64_t device);

// CUDA builds: the launch plan the CUDA backend would use for these sizes on a
// GPU with `num_sms` SMs and `smem_optin_bytes` of opt-in shared memory per
// block. Host code only (no GPU needed): for tests and the cost model in
// benchmarks/. Fields, in order: regime (0 tiny, 1 spread, 2 tiled with the
// prefix in each CTA, 3 tiled with the scan kernel), kernel launches, CTAs per
// launch, routes per tile, threads per CTA, histogram warps, dynamic shared
// memory bytes, scratch ints, fits (1 or 0).
std::vector<int64_t> describe_cuda_plan(int64_t numel, int64_t num_experts, int64_t block_size,
                                        int64_t sorted_size, bool map_while_counting,
                                        int64_t num_sms, int64_t smem_optin_bytes);
#endif

}  // namespace vllm_moe_align
