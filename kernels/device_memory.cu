// How much of a GPU's memory is in use, for the trainer's memory figures (gpu_memory_bytes).
#include <cuda_runtime.h>

#include "autotrain/cuda_kernels.h"

namespace autotrain::cuda {

// cudaMemGetInfo answers for the calling thread's current device: switch to `index` (-1: the current one, as
// at::Device("cuda") has it) for the call. A failed call's error is taken back (cudaGetLastError), else the next
// kernel launch's check (torch's included) would report it as its own.
int64_t device_memory_used(int index) {
  const auto unread = [] {
    cudaGetLastError();
    return int64_t{0};
  };
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) return unread();
  if (index < 0) index = current;
  if (current != index && cudaSetDevice(index) != cudaSuccess) return unread();
  size_t free_bytes = 0, total_bytes = 0;
  const cudaError_t status = cudaMemGetInfo(&free_bytes, &total_bytes);
  if (current != index) cudaSetDevice(current);
  if (status != cudaSuccess) return unread();
  return static_cast<int64_t>(total_bytes - free_bytes);
}

}  // namespace autotrain::cuda
