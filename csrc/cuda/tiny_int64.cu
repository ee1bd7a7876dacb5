// The tiny regime's kernels (tiny.cuh) for int64 ids, in a module of their
// own (kernels.h says why).
#include "tiny.cuh"

namespace vllm_moe_align {

cudaError_t launch_tiny_int64(const AlignProblem& c, const AlignBuffers& b,
                              const LaunchPlan& plan, int device, int,
                              cudaStream_t stream) {
  const Params p = to_params(c, b, plan);
  return launch_typed(static_cast<const int64_t*>(p.ids), p, plan, device, stream);
}

cudaError_t preload_tiny_int64() { return preload_typed<int64_t>(); }

}  // namespace vllm_moe_align
