// The bodies of the tensor ops, written once over the frontend's tensor type
// T (at::Tensor or torch::stable::Tensor). Besides the checks' functions
// (checks.h), TensorTraits<T> provides:
//   T contiguous(t)                  t itself when already contiguous
//   T to_int32(t)
//   T empty_int32(like, sizes)       uninitialised, on like's device
//   int device_index(t)
//   cudaStream_t cuda_stream(device) the current stream (CUDA builds)
#pragma once

#include "checks.h"
#include "cpu/align_cpu.h"

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
#include "cuda/launch.h"
#endif

#include <initializer_list>
#include <optional>
#include <tuple>

namespace vllm_moe_align {

template <typename T>
int32_t* int32_data(const T& t) {
  return static_cast<int32_t*>(TensorTraits<T>::data(t));
}

template <typename T>
int32_t* int32_data_or_null(const std::optional<T>& t) {
  return t.has_value() ? int32_data(*t) : nullptr;
}

// The out-variant on the CPU.
template <typename T>
void align_out_cpu(const T& topk_ids, int64_t num_experts, int64_t block_size,
                   T& sorted_token_ids, T& expert_ids, T& num_tokens_post_pad,
                   const std::optional<T>& expert_map, const std::optional<T>& scatter_idx,
                   bool ignore_invalid_experts, int64_t expert_ids_tail) {
  using TT = TensorTraits<T>;
  const AlignProblem p = check_align_args(topk_ids, num_experts, block_size, sorted_token_ids,
                                          expert_ids, num_tokens_post_pad, expert_map,
                                          scatter_idx, ignore_invalid_experts, expert_ids_tail);
  const T ids = TT::contiguous(topk_ids);
  CpuBuffers b;
  b.ids = TT::data(ids);
  b.ids_dtype = p.ids_dtype;
  b.map = int32_data_or_null(expert_map);
  b.sorted_ids = int32_data(sorted_token_ids);
  b.expert_ids = int32_data(expert_ids);
  b.post_pad = int32_data(num_tokens_post_pad);
  b.scatter_idx = p.has_scatter_idx ? int32_data(*scatter_idx) : nullptr;
  align_cpu(p, b);
}

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
// The out-variant on a GPU: validates, plans, allocates the (uninitialised)
// scratch the plan asks for, and launches on the current stream of
// topk_ids' device.
template <typename T>
void align_out_cuda(const T& topk_ids, int64_t num_experts, int64_t block_size,
                    T& sorted_token_ids, T& expert_ids, T& num_tokens_post_pad,
                    const std::optional<T>& expert_map, const std::optional<T>& scatter_idx,
                    bool ignore_invalid_experts, int64_t expert_ids_tail) {
  using TT = TensorTraits<T>;
  const AlignProblem p = check_align_args(topk_ids, num_experts, block_size, sorted_token_ids,
                                          expert_ids, num_tokens_post_pad, expert_map,
                                          scatter_idx, ignore_invalid_experts, expert_ids_tail);
  const int device = TT::device_index(topk_ids);
  const DeviceGuard guard(device);
  const DeviceLimits limits = device_limits(device);
  const LaunchPlan plan = plan_call(p, limits);

  // int32 and int64 ids are read as they are; narrower ones are widened once.
  T ids = TT::contiguous(topk_ids);
  if (p.ids_dtype != kInt32 && p.ids_dtype != kInt64) ids = TT::to_int32(ids);

  KernelParams k = kernel_sizes(p);
  std::optional<T> scratch;  // written before it is read by the kernels
  if (plan.scratch_ints > 0) {
    scratch = TT::empty_int32(topk_ids, {static_cast<int64_t>(plan.scratch_ints)});
    k.scratch = int32_data(*scratch);
  }
  k.ids = TT::data(ids);
  k.ids_int64 = p.ids_dtype == kInt64;
  k.map = int32_data_or_null(expert_map);
  k.sorted_ids = int32_data(sorted_token_ids);
  k.expert_ids = int32_data(expert_ids);
  k.post_pad = int32_data(num_tokens_post_pad);
  k.scatter_idx = p.has_scatter_idx ? int32_data(*scatter_idx) : nullptr;
  launch_call(k, plan, device, limits, TT::cuda_stream(device));
}
#endif

// The allocating variant: sizes and allocates the outputs (with torch's
// caching allocator: no kernel, no fill), then runs the out-variant `Out` of
// the same backend, which writes every element of every output.
template <typename T, auto Out>
std::tuple<T, T, T, T> align_alloc(const T& topk_ids, int64_t num_experts, int64_t block_size,
                                   int64_t max_num_tokens_padded,
                                   const std::optional<T>& expert_map,
                                   bool ignore_invalid_experts, int64_t expert_ids_tail,
                                   bool return_scatter_idx) {
  using TT = TensorTraits<T>;
  const int64_t numel = check_topk_ids(topk_ids).numel;
  check_experts_and_block_size(num_experts, block_size);
  check_max_num_tokens_padded(max_num_tokens_padded, numel, num_experts, block_size);
  T sorted_ids = TT::empty_int32(topk_ids, {max_num_tokens_padded});
  T expert_ids =
      TT::empty_int32(topk_ids, {(max_num_tokens_padded + block_size - 1) / block_size});
  T post_pad = TT::empty_int32(topk_ids, {1});
  T scatter = TT::empty_int32(topk_ids, {return_scatter_idx ? numel : 0, 1});
  std::optional<T> scatter_arg;
  if (return_scatter_idx) scatter_arg = scatter;
  Out(topk_ids, num_experts, block_size, sorted_ids, expert_ids, post_pad, expert_map,
      scatter_arg, ignore_invalid_experts, expert_ids_tail);
  return {sorted_ids, expert_ids, post_pad, scatter};
}

}  // namespace vllm_moe_align
