// A tiny kernel that proves a build's kernels load and run on the machine's GPU.
#include <cuda_runtime.h>

#include <cmath>
#include <vector>

#include "autotrain/cuda_kernels.h"

namespace autotrain::cuda {

namespace {

// x, y are (n,); y <- a*x + y
__global__ void axpy_kernel(int n, float a, const float* x, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

std::string describe(const char* step, cudaError_t status) {
  return std::string(step) + ": " + cudaGetErrorString(status);
}

}  // namespace

DeviceInfo device_info(int index) {
  DeviceInfo info;
  // -1 is the current device (at::Device("cuda") has no index). A failed call's error is taken back: the next kernel
  // launch's check would report it as its own.
  cudaDeviceProp properties{};
  if ((index < 0 && cudaGetDevice(&index) != cudaSuccess) ||
      cudaGetDeviceProperties(&properties, index) != cudaSuccess) {
    cudaGetLastError();
    return info;
  }
  info.name = properties.name;
  info.multiprocessors = properties.multiProcessorCount;
  int clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, index);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, index);
  info.peak_bandwidth_gbs = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
  info.l2_cache_bytes = properties.l2CacheSize;
  info.compute_capability = properties.major * 10 + properties.minor;
  return info;
}

std::string compiled_architectures() { return AUTOTRAIN_CUDA_ARCHITECTURES; }

std::string self_test() {
  int devices = 0;
  if (cudaError_t status = cudaGetDeviceCount(&devices); status != cudaSuccess)
    return std::string("no usable CUDA device (") + cudaGetErrorString(status) + ")";
  if (devices == 0) return "no CUDA device";
  const int n = 1000;
  const float a = 0.5f;
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) {
    x[i] = static_cast<float>(i);
    y[i] = static_cast<float>(n - i);
  }
  float *device_x = nullptr, *device_y = nullptr;
  std::string error;
  if (cudaError_t s = cudaMalloc(&device_x, n * sizeof(float)); s != cudaSuccess) return describe("cudaMalloc", s);
  if (cudaError_t s = cudaMalloc(&device_y, n * sizeof(float)); s != cudaSuccess) {
    cudaFree(device_x);
    return describe("cudaMalloc", s);
  }
  cudaMemcpy(device_x, x.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemcpy(device_y, y.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  axpy_kernel<<<(n + 255) / 256, 256>>>(n, a, device_x, device_y);
  if (cudaError_t s = cudaGetLastError(); s != cudaSuccess) error = describe("axpy_kernel launch", s);
  std::vector<float> result(n);
  if (error.empty()) {
    if (cudaError_t s = cudaMemcpy(result.data(), device_y, n * sizeof(float), cudaMemcpyDeviceToHost); s != cudaSuccess)
      error = describe("cudaMemcpy", s);
  }
  cudaFree(device_x);
  cudaFree(device_y);
  if (!error.empty()) return error;
  for (int i = 0; i < n; ++i) {
    float expected = a * x[i] + y[i];  // exact in fp32 for these small integers and halves
    if (result[i] != expected) return "axpy_kernel: wrong result at index " + std::to_string(i);
  }
  return "";
}

}  // namespace autotrain::cuda
