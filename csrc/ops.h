// The ops, written once over the frontend's tensor type T (at::Tensor or
// torch::stable::Tensor): each op (each variant of the align op, and
// fused_globalize_align_block_size_out) checks its arguments once
// (checks.h), then runs the backend's unchecked body. Besides the checks'
// functions, TensorTraits<T> provides:
//   T contiguous(t)                  t itself when already contiguous
//   T to_int32(t)
//   T empty_int32(like, sizes)       uninitialised, on like's device
//   int device_index(t)
//   cudaStream_t cuda_stream(device) the current stream (CUDA builds)
#pragma once

#include "checks.h"
#include "cpu/align_cpu.h"
#include "cpu/globalize_cpu.h"

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

// The pointers of one call; `ids` holds the routes as the backend reads them,
// of dtype `ids_dtype` (Dtype).
template <typename T>
AlignBuffers buffers_of(const T& ids, int ids_dtype, const T& sorted_token_ids,
                        const T& expert_ids, const T& num_tokens_post_pad,
                        const std::optional<T>& expert_map, const std::optional<T>& scatter_idx) {
  AlignBuffers b{};
  b.ids = TensorTraits<T>::data(ids);
  b.ids_dtype = ids_dtype;
  b.map = int32_data_or_null(expert_map);
  b.sorted_ids = int32_data(sorted_token_ids);
  b.expert_ids = int32_data(expert_ids);
  b.post_pad = int32_data(num_tokens_post_pad);
  b.scatter_idx = int32_data_or_null(scatter_idx);
  return b;
}

// The bodies: one call on a validated problem (checks.h), with no checks of
// their own. Both variants of a backend run its body: the out-variant on the
// caller's buffers, the allocating variant on the outputs it allocated.

// The CPU body.
template <typename T>
void run_align_cpu(const AlignProblem& p, const T& topk_ids, const T& sorted_token_ids,
                   const T& expert_ids, const T& num_tokens_post_pad,
                   const std::optional<T>& expert_map, const std::optional<T>& scatter_idx) {
  using TT = TensorTraits<T>;
  const T ids = TT::contiguous(topk_ids);
  align_cpu(p, buffers_of(ids, p.ids_dtype, sorted_token_ids, expert_ids, num_tokens_post_pad,
                          expert_map, scatter_idx));
}

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
// The CUDA body: plans, allocates the (uninitialised) scratch the plan asks
// for, and launches on the current stream of topk_ids' device.
template <typename T>
void run_align_cuda(const AlignProblem& p, const T& topk_ids, const T& sorted_token_ids,
                    const T& expert_ids, const T& num_tokens_post_pad,
                    const std::optional<T>& expert_map, const std::optional<T>& scatter_idx) {
  using TT = TensorTraits<T>;
  const int device = TT::device_index(topk_ids);
  const DeviceGuard guard(device);
  const DeviceLimits limits = device_limits(device);
  const LaunchPlan plan = plan_call(p, limits);

  // int32 and int64 ids are read as they are; narrower ones are widened once.
  T ids = TT::contiguous(topk_ids);
  if (p.ids_dtype != kInt32 && p.ids_dtype != kInt64) ids = TT::to_int32(ids);

  AlignBuffers b = buffers_of(ids, p.ids_dtype == kInt64 ? kInt64 : kInt32, sorted_token_ids,
                              expert_ids, num_tokens_post_pad, expert_map, scatter_idx);
  std::optional<T> scratch;  // written before it is read by the kernels
  if (plan.scratch_ints > 0) {
    scratch = TT::empty_int32(topk_ids, {static_cast<int64_t>(plan.scratch_ints)});
    b.scratch = int32_data(*scratch);
  }
  launch_call(p, b, plan, device, limits, TT::cuda_stream(device));
}
#endif

// The out-variant: checks its arguments and the caller's buffers once, then
// runs the backend's body `Run` on them.
template <typename T, auto Run>
void align_out(const T& topk_ids, int64_t num_experts, int64_t block_size, T& sorted_token_ids,
               T& expert_ids, T& num_tokens_post_pad, const std::optional<T>& expert_map,
               const std::optional<T>& scatter_idx, bool ignore_invalid_experts,
               int64_t expert_ids_tail) {
  const AlignProblem p =
      check_align_out_args(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids,
                           num_tokens_post_pad, expert_map, scatter_idx, ignore_invalid_experts,
                           expert_ids_tail);
  Run(p, topk_ids, sorted_token_ids, expert_ids, num_tokens_post_pad, expert_map, scatter_idx);
}

// The allocating variant: checks its arguments once, sizes and allocates the
// outputs by the problem (with torch's caching allocator: no kernel, no
// fill), then runs the backend's body `Run`, which writes every element of
// every output.
template <typename T, auto Run>
std::tuple<T, T, T, T> align_alloc(const T& topk_ids, int64_t num_experts, int64_t block_size,
                                   int64_t max_num_tokens_padded,
                                   const std::optional<T>& expert_map,
                                   bool ignore_invalid_experts, int64_t expert_ids_tail,
                                   bool return_scatter_idx) {
  using TT = TensorTraits<T>;
  const AlignProblem p =
      check_align_alloc_args(topk_ids, num_experts, block_size, max_num_tokens_padded,
                             expert_map, ignore_invalid_experts, expert_ids_tail,
                             return_scatter_idx);
  T sorted_ids = TT::empty_int32(topk_ids, {p.sorted_size});
  T expert_ids = TT::empty_int32(topk_ids, {p.expert_ids_size});
  T post_pad = TT::empty_int32(topk_ids, {1});
  T scatter = TT::empty_int32(topk_ids, {p.has_scatter_idx ? p.numel : 0, 1});
  std::optional<T> scatter_arg;
  if (p.has_scatter_idx) scatter_arg = scatter;
  Run(p, topk_ids, sorted_ids, expert_ids, post_pad, expert_map, scatter_arg);
  return {sorted_ids, expert_ids, post_pad, scatter};
}

// The CPU body of fused_globalize_align_block_size_out. `ids` (recv_topk_idx)
// is not used here; the CUDA body takes its device from it and allocates its
// buffers like it.
template <typename T>
void run_globalize_cpu(const GlobalizeProblem& p, const GlobalizeBuffers& b, const T& /*ids*/) {
  globalize_cpu(p, b);
}

#ifdef VLLM_MOE_ALIGN_CUDA_ARCHS
// The CUDA body of fused_globalize_align_block_size_out, on the current
// stream of the ids' device, with no host sync (the kernels read the number
// of real rows on the device). Decode sizes: one fused launch
// (cuda/globalize.cu). Larger calls: the align kernels over the local
// experts (align_problem_of) write the caller's buffers; the tiled ones
// globalize as they go, before the tiny and spread ones a pass writes each
// route's bin to an int32 buffer allocated here (plan.h says why).
template <typename T>
void run_globalize_cuda(const GlobalizeProblem& p, const GlobalizeBuffers& b,
                        const T& recv_topk_idx) {
  using TT = TensorTraits<T>;
  const int device = TT::device_index(recv_topk_idx);
  const DeviceGuard guard(device);
  const DeviceLimits limits = device_limits(device);
  const cudaStream_t stream = TT::cuda_stream(device);
  const GlobalizePlan plan = plan_globalize_call(p, limits);
  std::optional<T> bins, scratch;
  if (globalize_needs_bins(plan)) bins = TT::empty_int32(recv_topk_idx, {p.numel});
  if (plan.align.scratch_ints > 0) {  // (0 when fused)
    scratch = TT::empty_int32(recv_topk_idx, {static_cast<int64_t>(plan.align.scratch_ints)});
  }
  launch_globalize_call(p, b, plan, int32_data_or_null(bins), int32_data_or_null(scratch), device,
                        limits, stream);
}
#endif

// fused_globalize_align_block_size_out: checks its arguments and the
// caller's buffers once, then runs the backend's body `Run`, which reads the
// number of real rows from psum_recv_per_rank itself and writes every
// element of every output (and of recv_topk_idx, in place).
template <typename T, auto Run>
void globalize_out(T& recv_topk_idx, const T& psum_recv_per_rank, int64_t rank_expert_offset,
                   int64_t global_num_experts, int64_t local_num_experts, int64_t block_size,
                   T& sorted_ids, T& expert_ids, T& num_tokens_post_pad,
                   const std::optional<T>& scatter_idx) {
  const GlobalizeProblem p = check_globalize_out_args(
      recv_topk_idx, psum_recv_per_rank, rank_expert_offset, global_num_experts,
      local_num_experts, block_size, sorted_ids, expert_ids, num_tokens_post_pad, scatter_idx);
  GlobalizeBuffers b{};
  b.ids = static_cast<int64_t*>(TensorTraits<T>::data(recv_topk_idx));
  b.psum = int32_data(psum_recv_per_rank);
  b.sorted_ids = int32_data(sorted_ids);
  b.expert_ids = int32_data(expert_ids);
  b.post_pad = int32_data(num_tokens_post_pad);
  b.scatter_idx = int32_data_or_null(scatter_idx);
  Run(p, b, recv_topk_idx);
}

}  // namespace vllm_moe_align
