// Host side of the CUDA backend (launch.h).
#include "launch.h"

#include <atomic>
#include <cstdint>

namespace vllm_moe_align {
namespace {

// Cached limits per device index, packed as (num_sms << 32 | smem) + 1 so
// that 0 means "not read yet". Racing first calls read the same values.
constexpr int kCachedDevices = 1024;
std::atomic<uint64_t> g_limits[kCachedDevices];

// Programmatic dependent launch: asked for (set_dependent_launch), and per
// device whether its compute capability has it (0: not read yet, 1: no,
// 2: yes). Off until asked for.
std::atomic<bool> g_dependent_asked{false};
std::atomic<uint8_t> g_dependent_capable[kCachedDevices];

// Programmatic dependent launch came with compute capability 9.0. A device
// that cannot be asked gets ordinary launches (the launch reports the error).
bool has_dependent_launch(int device) {
  int major = 0;
  return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
         major >= 9;
}

}  // namespace

void set_dependent_launch(bool enabled) {
  g_dependent_asked.store(enabled, std::memory_order_relaxed);
}

bool dependent_launch_asked() { return g_dependent_asked.load(std::memory_order_relaxed); }

bool dependent_launch(int device) {
  if (!dependent_launch_asked()) return false;
  if (device < 0 || device >= kCachedDevices) return has_dependent_launch(device);
  uint8_t capable = g_dependent_capable[device].load(std::memory_order_relaxed);
  if (capable == 0) {
    capable = has_dependent_launch(device) ? 2 : 1;
    g_dependent_capable[device].store(capable, std::memory_order_relaxed);
  }
  return capable == 2;
}

void check_cuda(cudaError_t err) {
  if (err == cudaSuccess) return;
  runtime_error(cat("CUDA error: ", cudaGetErrorString(err), " (", cudaGetErrorName(err), ")"));
}

DeviceLimits device_limits(int device) {
  const bool cacheable = device >= 0 && device < kCachedDevices;
  if (cacheable) {
    const uint64_t v = g_limits[device].load(std::memory_order_relaxed);
    if (v != 0) {
      return {static_cast<int>((v - 1) >> 32), static_cast<int>((v - 1) & 0xffffffffu)};
    }
  }
  int sms = 0, smem = 0;
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  check_cuda(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (cacheable) {
    const uint64_t packed = (static_cast<uint64_t>(sms) << 32 | static_cast<uint32_t>(smem)) + 1;
    g_limits[device].store(packed, std::memory_order_relaxed);
  }
  return {sms, smem};
}

DeviceGuard::DeviceGuard(int device) {
  int current = -1;
  check_cuda(cudaGetDevice(&current));
  if (current != device) {
    check_cuda(cudaSetDevice(device));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // a destructor does not throw
}

LaunchPlan plan_call(const AlignProblem& p, const DeviceLimits& limits) {
  const LaunchPlan plan = plan_launch(
      static_cast<int>(p.numel), static_cast<int>(p.num_experts), static_cast<int>(p.block_size),
      static_cast<int>(p.sorted_size), p.map_while_counting, limits.num_sms,
      limits.smem_optin_bytes);
  VLLM_MOE_ALIGN_CHECK_VALUE(plan.fits, "num_experts=", p.num_experts,
                             " needs more shared memory than this GPU offers per block");
  return plan;
}

void launch_call(const AlignProblem& p, const AlignBuffers& b, const LaunchPlan& plan,
                 int device, const DeviceLimits& limits, cudaStream_t stream) {
  check_cuda(launch_align(p, b, plan, device, limits.smem_optin_bytes, stream));
}

GlobalizePlan plan_globalize_call(const GlobalizeProblem& p, const DeviceLimits& limits) {
  const AlignProblem align = align_problem_of(p);
  const GlobalizePlan plan = plan_globalize(
      static_cast<int>(align.numel), static_cast<int>(align.num_experts),
      static_cast<int>(align.block_size), static_cast<int>(align.sorted_size), limits.num_sms,
      limits.smem_optin_bytes);
  VLLM_MOE_ALIGN_CHECK_VALUE(plan.fused || plan.align.fits, "local_num_experts=",
                             p.local_num_experts,
                             " needs more shared memory than this GPU offers per block");
  return plan;
}

void launch_globalize_call(const GlobalizeProblem& p, const GlobalizeBuffers& b,
                           const GlobalizePlan& plan, int32_t* bins, int32_t* scratch, int device,
                           const DeviceLimits& limits, cudaStream_t stream) {
  if (plan.fused) {
    check_cuda(launch_globalize_fused(p, b, plan, device, stream));
    return;
  }
  const AlignProblem align = align_problem_of(p);
  AlignBuffers ab{};
  ab.ids_dtype = plan.folded ? kInt64 : kInt32;
  ab.ids = plan.folded ? static_cast<const void*>(b.ids) : bins;
  ab.sorted_ids = b.sorted_ids;
  ab.expert_ids = b.expert_ids;
  ab.post_pad = b.post_pad;
  ab.scatter_idx = b.scatter_idx;
  ab.scratch = scratch;
  if (plan.folded) {
    const GlobalizeArgs g{b.ids, b.psum + (p.psum_size - 1), static_cast<int>(p.topk),
                          static_cast<int>(p.local_num_experts), p.rank_expert_offset,
                          p.global_num_experts};
    check_cuda(launch_tiled_globalize(align, ab, plan.align, g, device, limits.smem_optin_bytes,
                                      stream));
    return;
  }
  check_cuda(launch_globalize(p, b, bins, plan, device, stream));
  check_cuda(launch_align(align, ab, plan.align, device, limits.smem_optin_bytes, stream));
}

}  // namespace vllm_moe_align
