// The tiled regime's kernels (tiled.cuh) for int32 ids, in a module of their
// own (kernels.h says why).
#include "tiled.cuh"

namespace vllm_moe_align {

cudaError_t launch_tiled_int32(const AlignProblem& c, const AlignBuffers& b,
                               const LaunchPlan& plan, int device, int smem_optin_bytes,
                               cudaStream_t stream) {
  const Params p = to_params(c, b, plan);
  return launch_typed(static_cast<const int32_t*>(p.ids), p, plan, device, smem_optin_bytes,
                      stream);
}

cudaError_t preload_tiled_int32() { return preload_typed<int32_t>(); }

}  // namespace vllm_moe_align
