// What the kernel files share: conversions between fp32 and the element types, the dispatch on an element
// type, the launch-error check, and the grid size of grid-stride kernels. Internal to kernels/ (each .cu file
// gets its own copy).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "autotrain/cuda_kernels.h"

namespace autotrain::cuda {

namespace {

// fp32 -> T rounded to nearest-even, as libtorch's casts and its fp16 / bf16 ops (which compute in fp32) round.
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Calls launch(T{}) with T the element type of `dtype`.
template <typename Launch>
void with_element_type(DType dtype, Launch&& launch) {
  switch (dtype) {
    case DType::f32: launch(float{}); break;
    case DType::f16: launch(__half{}); break;
    case DType::bf16: launch(__nv_bfloat16{}); break;
  }
}

// Launches `kernel` (kernel<<<grid, block, shared_bytes, stream>>>(args...)); under the CPU emulator of
// tests/simt (AUTOTRAIN_SIMT_EMULATION), runs it there.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                   const Args&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "one argument per kernel parameter");
#ifdef AUTOTRAIN_SIMT_EMULATION
  (void)stream;
  ::autotrain::simt::launch(grid, block, shared_bytes, [&] { kernel(static_cast<Params>(args)...); });
#else
  kernel<<<grid, block, shared_bytes, stream>>>(static_cast<Params>(args)...);
#endif
}

// An attribute of the current device (0 when it cannot be read).
inline int current_device_attribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&value, attribute, device) != cudaSuccess)
    return 0;
  return value;
}

// Whether the current device has programmatic dependent launch (sm_90+; read once).
inline bool overlapping_launch_available() {
  static const bool available = current_device_attribute(cudaDevAttrComputeCapabilityMajor) >= 9;
  return available;
}

// As launch_kernel, and when `overlap` on a device that has it (overlapping_launch_available), with programmatic
// dependent launch: the kernel may start while the one before it in the stream finishes. It must then call
// wait_for_prior_grids() before it reads anything that kernel wrote or writes anything it reads.
template <typename... Params, typename... Args>
void launch_kernel_overlapping(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                               cudaStream_t stream, bool overlap, const Args&... args) {
#ifdef AUTOTRAIN_SIMT_EMULATION
  (void)overlap;  // blocks run one after another there anyway
  launch_kernel(kernel, grid, block, shared_bytes, stream, args...);
#else
  if (!overlap || !overlapping_launch_available()) {
    launch_kernel(kernel, grid, block, shared_bytes, stream, args...);
    return;
  }
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  if (cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...) != cudaSuccess) {
    // Refused (a driver or stream without programmatic launches): the launch error is not sticky, so clear it and
    // launch as usual; the kernel's wait then does nothing.
    (void)cudaGetLastError();
    launch_kernel(kernel, grid, block, shared_bytes, stream, args...);
  }
#endif
}

// In a kernel launched overlapping (above): waits until the kernels before it in the stream have finished and
// their writes are visible; then lets the next kernel, if it was launched overlapping, start as this one's blocks
// finish. Without an overlapping launch, or below sm_90, both do nothing.
__device__ __forceinline__ void wait_for_prior_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// A kernel's dynamic shared memory (the bytes its launch asks for), as `type* name`.
#ifdef AUTOTRAIN_SIMT_EMULATION
#define AUTOTRAIN_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::autotrain::simt::dynamic_shared())
#else
#define AUTOTRAIN_DYNAMIC_SHARED(type, name) extern __shared__ __align__(128) type name[]
#endif

// CUDA's error from the last launch, or nullptr.
inline const char* launch_status() {
  const cudaError_t status = cudaGetLastError();
  return status == cudaSuccess ? nullptr : cudaGetErrorString(status);
}

// The current device's SM count, read once (as the launch heuristics have always done).
inline int64_t multiprocessors() {
  static const int64_t count = std::max(current_device_attribute(cudaDevAttrMultiProcessorCount), 1);
  return count;
}

// Blocks for a grid-stride kernel: enough to fill the device a few times over, few enough that the per-block
// set-up (the 4-bit kernels load the code and map into shared memory) is paid rarely.
inline unsigned grid_for(int64_t items, unsigned threads) {
  const int64_t limit = multiprocessors() * 8;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((items + threads - 1) / threads, limit)));
}

}  // namespace

}  // namespace autotrain::cuda
