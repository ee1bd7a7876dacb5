// The spread regime's kernels (spread.cuh) for int64 ids, in a module of their
// own (kernels.h says why).
#include "spread.cuh"

namespace vllm_moe_align {

cudaError_t launch_spread_int64(const AlignProblem& c, const AlignBuffers& b,
                                const LaunchPlan& plan, int device, int smem_optin_bytes,
                                cudaStream_t stream) {
  const Params p = to_params(c, b, plan);
  return launch_typed(static_cast<const int64_t*>(p.ids), p, plan, device, smem_optin_bytes,
                      stream);
}

cudaError_t preload_spread_int64() { return preload_typed<int64_t>(); }

}  // namespace vllm_moe_align
