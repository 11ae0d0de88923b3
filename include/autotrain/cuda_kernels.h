// Entry points of the CUDA kernels in kernels/ (compiled only when the build has CUDA:
// AUTOTRAIN_WITH_CUDA). Each kernel has a CPU reference in src/ that tests hold it to.
#pragma once

#include <cstdint>
#include <string>

namespace autotrain::cuda {

// The compute capabilities this build carries machine code for, e.g. "sm_80 sm_86 sm_89 sm_90 (+PTX)".
std::string compiled_architectures();

// Runs y = a*x + y for n = 1000 on device 0 and checks it against the same sum on the CPU. Returns ""
// on success, else what went wrong (no device, driver too old, no kernel image for this GPU, ...).
std::string self_test();

// The name of GPU `device` ("NVIDIA H100 80GB HBM3"), or "unknown GPU".
std::string device_name(int device);

// GPU memory in use (cudaMemGetInfo: total - free) on `device`, in bytes: every process's allocations and
// CUDA contexts, not only this process's tensors. 0 when it cannot be read.
int64_t device_memory_used(int device);

}  // namespace autotrain::cuda
