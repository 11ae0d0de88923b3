// GPU tests: they run where the build has CUDA kernels and the machine a device, and skip otherwise.
#include <gtest/gtest.h>

#include "autotrain/cuda_kernels.h"

namespace autotrain {
namespace {

bool have_cuda_device() { return torch::cuda::is_available() && torch::cuda::device_count() > 0; }

TEST(CudaKernels, SelfTestRunsOnTheDevice) {
#ifndef AUTOTRAIN_WITH_CUDA
  GTEST_SKIP() << "built without CUDA kernels";
#else
  EXPECT_FALSE(cuda::compiled_architectures().empty());
  if (!have_cuda_device()) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(cuda::self_test(), "");
#endif
}

}  // namespace
}  // namespace autotrain
