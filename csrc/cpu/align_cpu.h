// CPU kernel of the align ops, on a validated problem and plain pointers (no
// torch types: both frontends call it).
#pragma once

#include "../problem.h"

namespace vllm_moe_align {

// `b.ids` holds p.numel contiguous routes of dtype b.ids_dtype; b.scratch is
// not used.
void align_cpu(const AlignProblem& p, const AlignBuffers& b);

}  // namespace vllm_moe_align
