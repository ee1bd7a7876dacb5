// One call of the align ops as every backend sees it: the problem
// (AlignProblem: sizes and flags, built once per call by the checks in
// checks.h) and the memory it reads and writes (AlignBuffers: plain pointers,
// filled in by the op's body in ops.h); GlobalizeProblem and GlobalizeBuffers
// are the same for fused_globalize_align_block_size_out. Plain C++, no torch
// types: the CPU kernels, the CUDA host code and the CUDA kernel files (which
// stay free of torch headers) include it.
#pragma once

#include <cstdint>

namespace vllm_moe_align {

// torch's ScalarType codes of the dtypes the ops read (the same numbers in
// every torch release and both ABIs).
enum Dtype : int { kUInt8 = 0, kInt8 = 1, kInt16 = 2, kInt32 = 3, kInt64 = 4 };

// One call, validated: built once per call by the checks, then only read.
struct AlignProblem {
  int ids_dtype;            // topk_ids' dtype (Dtype)
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

// Where one call's data lives (all on one device, contiguous). The ids are
// the routes as the backend reads them: topk_ids (or a contiguous copy),
// widened to int32 where the backend needs it (the CUDA kernels read int32
// and int64 only), so their dtype is given here.
struct AlignBuffers {
  const void* ids;
  int ids_dtype;         // Dtype of `ids`
  const int32_t* map;    // expert_map or nullptr
  int32_t* sorted_ids;
  int32_t* expert_ids;
  int32_t* post_pad;
  int32_t* scatter_idx;  // or nullptr
  int32_t* scratch;      // CUDA: LaunchPlan::scratch_ints ints, or nullptr if 0
};

// One call of fused_globalize_align_block_size_out, validated. Every size
// comes from tensor shapes and integer arguments; the number of real rows
// (num_recv) is not here: it lives on the device, in psum_recv_per_rank's last
// element, and the kernel reads it itself (so a captured CUDA graph replays
// with the current value and the host never waits for the device).
struct GlobalizeProblem {
  int64_t numel;               // routes: recv_topk_idx.numel() = N * topk
  int64_t topk;                // recv_topk_idx.size(1): route i is in row i / topk
  int64_t psum_size;           // P: num_recv = psum_recv_per_rank[P - 1]
  int64_t rank_expert_offset;  // global id of local expert 0
  int64_t global_num_experts;  // a route is dropped when its global id is >= this
  int64_t local_num_experts;   // L: bins of the histogram
  int64_t block_size;          // B
  int64_t sorted_size;         // sorted_ids.numel(): every slot is written
  int64_t expert_ids_size;     // expert_ids.numel(): every slot is written
  bool has_scatter_idx;
};

// Where one call of fused_globalize_align_block_size_out reads and writes
// (all on one device, contiguous).
struct GlobalizeBuffers {
  int64_t* ids;          // recv_topk_idx: local ids in, global ids (or -1) out
  const int32_t* psum;   // psum_recv_per_rank (psum_size entries)
  int32_t* sorted_ids;
  int32_t* expert_ids;
  int32_t* post_pad;
  int32_t* scatter_idx;  // or nullptr
  int32_t* scratch;      // for a CUDA kernel's counters; the CPU kernel takes nullptr
};

// The align problem a globalize call reduces to once each route's bin (its
// local id, or -1 when dropped) is known: int32 bins over the local experts
// (at least one, so the align kernels have a bin; with none every bin is
// -1), no map, -1 past the used blocks, sentinel numel, the call's buffers.
inline AlignProblem align_problem_of(const GlobalizeProblem& g) {
  AlignProblem p{};
  p.ids_dtype = kInt32;
  p.numel = g.numel;
  p.num_experts = g.local_num_experts > 0 ? g.local_num_experts : 1;
  p.block_size = g.block_size;
  p.sorted_size = g.sorted_size;
  p.expert_ids_size = g.expert_ids_size;
  p.has_map = false;
  p.map_while_counting = false;
  p.expert_ids_tail = -1;
  p.has_scatter_idx = g.has_scatter_idx;
  return p;
}

}  // namespace vllm_moe_align
