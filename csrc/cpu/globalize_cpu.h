// CPU kernel of fused_globalize_align_block_size_out, on a validated problem
// and plain pointers (no torch types: both frontends call it).
#pragma once

#include "../problem.h"

namespace vllm_moe_align {

// b.ids holds p.numel contiguous int64 local ids, rewritten in place; b.psum
// p.psum_size int32 entries, the last one read as the number of real rows;
// b.scratch is not used.
void globalize_cpu(const GlobalizeProblem& p, const GlobalizeBuffers& b);

}  // namespace vllm_moe_align
