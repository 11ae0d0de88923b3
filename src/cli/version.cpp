#include <cstdio>

#include <torch/version.h>

#include "autotrain/cuda_kernels.h"
#include "commands.h"

namespace autotrain::cli {

void print_version() {
  std::printf("autotrain %s\n", AUTOTRAIN_VERSION);
  std::printf("libtorch %s\n", TORCH_VERSION);
#ifdef AUTOTRAIN_WITH_CUDA
  std::printf("CUDA kernels: compiled for %s\n", cuda::compiled_architectures().c_str());
  std::string problem = cuda::self_test();
  std::printf("CUDA device: %s\n", problem.empty() ? "kernel self-test passed" : problem.c_str());
#else
  std::printf("CUDA kernels: not compiled (configure with -DAUTOTRAIN_CUDA=ON and nvcc on PATH)\n");
#endif
}

}  // namespace autotrain::cli
