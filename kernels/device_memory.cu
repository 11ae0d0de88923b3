// How much of a GPU's memory is in use, for the trainer's memory figures (gpu_memory_bytes).
#include <cuda_runtime.h>

#include "autotrain/cuda_kernels.h"

namespace autotrain::cuda {

// cudaMemGetInfo answers for the calling thread's current device: switch to `index` for the call.
int64_t device_memory_used(int index) {
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) return 0;
  if (current != index && cudaSetDevice(index) != cudaSuccess) return 0;
  size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t status = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (current != index) cudaSetDevice(current);
  return status == cudaSuccess ? static_cast<int64_t>(total_bytes - free_bytes) : 0;
}

}  // namespace autotrain::cuda
