// Where training and generation run: the CPU, or a CUDA GPU through libtorch's CUDA backend, which is
// loaded only when a GPU is used (include/autotrain/cuda_backend.h). The `--device` of train and generate.
#pragma once

#include <cstdint>
#include <string>

namespace autotrain {

// `choice` is "auto", "cpu" or "cuda". auto: the first GPU when this build has CUDA (AUTOTRAIN_WITH_CUDA),
// the NVIDIA driver is installed and torch sees a device, else the CPU (also for several data-parallel
// workers). cuda: the first GPU, or Error (exit 1) saying why there is none. Loads the CUDA backend first,
// so call it before anything asks torch about CUDA (at::manual_seed does). On a GPU, fp32 matmuls stay
// fp32 (TF32 off), as on the CPU.
at::Device select_device(const std::string& choice, int world_size = 1);

// "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)": for the log.
std::string describe_device(at::Device device);

// Whether bf16 matmuls run natively on `device`: the CPU (libtorch's kernels), a GPU of compute capability 8.0 or
// newer (Ampere: cuBLAS's bf16 GEMMs and the tensor-core kernels); false for older GPUs and in a build without CUDA.
bool bf16_native(at::Device device);

// Error (exit 2) for --device cuda with several data-parallel workers: not supported yet (gloo would reduce
// CUDA gradients through the host, and NCCL is not wired).
void check_device_for_workers(const std::string& choice, int world_size);

// GPU memory in use on `device` (cudaMemGetInfo: total - free, every process and CUDA context); 0 for the
// CPU and in a build without CUDA.
int64_t gpu_memory_in_use_bytes(at::Device device);

// The state of the default random generator of `device` (the CPU's Mersenne twister; a GPU's philox seed
// and offset) as a CPU byte tensor, and its restoration. LoRA dropout draws from the generator of the
// device it runs on.
at::Tensor rng_state(at::Device device);
void set_rng_state(at::Device device, const at::Tensor& state);

}  // namespace autotrain
