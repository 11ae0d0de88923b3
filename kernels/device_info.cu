// What the trainer reports about its GPU: the device's name and how much of its memory is in use.
#include <cuda_runtime.h>

#include "autotrain/cuda_kernels.h"

namespace autotrain::cuda {

std::string device_name(int device) {
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, device) != cudaSuccess) return "unknown GPU";
  return properties.name;
}

// cudaMemGetInfo answers for the calling thread's current device: switch to `device` for the call.
int64_t device_memory_used(int device) {
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) return 0;
  if (current != device && cudaSetDevice(device) != cudaSuccess) return 0;
  size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t status = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (current != device) cudaSetDevice(current);
  return status == cudaSuccess ? static_cast<int64_t>(total_bytes - free_bytes) : 0;
}

}  // namespace autotrain::cuda
