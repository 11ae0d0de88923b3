// libtorch's CUDA backend, loaded when a CUDA device is asked for. autotrain links libtorch's CPU half
// (torch_cpu + c10) only: libtorch_cuda and the CUDA libraries it needs (cuBLAS, cuDNN, NCCL, NVRTC, ...)
// would add ~370 MB of resident memory to every process at start-up, GPU or not (tools/bench_merge.sh).
#pragma once

namespace autotrain {

// Loads libtorch_cuda.so once (from the folder of the libtorch_cpu.so in use), which registers torch's
// CUDA hooks, kernels and allocator; afterwards torch::cuda::is_available() tells whether there is a
// device and at::kCUDA tensors work on it. Call it before anything asks torch about CUDA (at::manual_seed
// does): torch keeps its first answer. Throws Error saying why when the backend cannot be loaded.
void ensure_cuda_backend();

}  // namespace autotrain
