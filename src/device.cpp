#include "autotrain/device.h"

#include <dlfcn.h>

#include <ATen/Context.h>
#include <torch/cuda.h>

#include <mutex>

#include "autotrain/cuda_backend.h"
#include "autotrain/error.h"
#include "autotrain/logging.h"
#ifdef AUTOTRAIN_WITH_CUDA
#include "autotrain/cuda_kernels.h"
#endif

namespace autotrain {

namespace {

// Whether the NVIDIA driver's library is installed. Checked before the CUDA backend is loaded, so that
// `auto` on a machine without a GPU does not pay the backend's ~370 MB of resident memory.
bool nvidia_driver_installed() {
  void* driver = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (driver == nullptr) return false;
  ::dlclose(driver);
  return true;
}

// Empty when a CUDA device can be used, else why not.
std::string why_no_gpu() {
#ifndef AUTOTRAIN_WITH_CUDA
  return "this build has no CUDA support (configure with -DAUTOTRAIN_CUDA=ON and nvcc on PATH)";
#else
  if (!nvidia_driver_installed()) return "no NVIDIA driver (libcuda.so.1) on this machine";
  try {
    ensure_cuda_backend();
  } catch (const Error& e) {
    return e.what();
  }
  if (!torch::cuda::is_available()) return "torch sees no CUDA device (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
  return "";
#endif
}

}  // namespace

void check_device_for_workers(const std::string& choice, int world_size) {
  if (choice == "cuda" && world_size > 1) {
    throw config_error(log::cat("--device cuda with ", world_size, " data-parallel workers is not supported yet ",
                                "(NCCL is not wired); use one worker on the GPU, or --device cpu"));
  }
}

at::Device select_device(const std::string& choice, int world_size) {
  if (choice != "auto" && choice != "cpu" && choice != "cuda")
    throw config_error("--device \"" + choice + "\": expected auto, cpu or cuda");
  check_device_for_workers(choice, world_size);
  at::Device device = at::kCPU;
  if (choice == "cuda") {
    if (const std::string problem = why_no_gpu(); !problem.empty()) throw Error("--device cuda: " + problem);
    device = at::Device(at::kCUDA, 0);
  } else if (choice == "auto") {
    if (world_size > 1) {
      if (nvidia_driver_installed())
        log::info("--device auto: the CPU, as several data-parallel workers on GPUs are not supported yet");
    } else if (const std::string problem = why_no_gpu(); problem.empty()) {
      device = at::Device(at::kCUDA, 0);
    } else {
      log::debug("--device auto: the CPU, because " + problem);
    }
  }
  // PyTorch's default, made explicit: an fp32 run computes in fp32 on the GPU as on the CPU, whatever
  // TORCH_ALLOW_TF32_CUBLAS_OVERRIDE says.
  if (device.is_cuda())
    at::globalContext().setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, at::Float32Precision::IEEE);
  return device;
}

std::string describe_device(at::Device device) {
#ifdef AUTOTRAIN_WITH_CUDA
  if (device.is_cuda()) {
    const std::string name = cuda::device_info(device.index()).name;
    return device.str() + " (" + (name.empty() ? "unknown GPU" : name) + ")";
  }
#endif
  return device.str();
}

bool bf16_native(at::Device device) {
  if (!device.is_cuda()) return true;
#ifdef AUTOTRAIN_WITH_CUDA
  return cuda::device_info(device.index()).compute_capability >= 80;
#else
  return false;
#endif
}

int64_t gpu_memory_in_use_bytes(at::Device device) {
#ifdef AUTOTRAIN_WITH_CUDA
  if (device.is_cuda()) return cuda::device_memory_used(device.index());
#endif
  (void)device;
  return 0;
}

at::Tensor rng_state(at::Device device) {
  at::Generator generator = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_rng_state(at::Device device, const at::Tensor& state) {
  at::Generator generator = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

}  // namespace autotrain
