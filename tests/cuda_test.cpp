// GPU tests: they run where the build has CUDA kernels and the machine a device, and skip otherwise.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include "autotrain/cuda_backend.h"
#include "autotrain/cuda_kernels.h"
#include "autotrain/error.h"

namespace autotrain {
namespace {

bool is_loaded(const char* library) { return ::dlopen(library, RTLD_NOW | RTLD_NOLOAD) != nullptr; }

// ensure_cuda_backend(), false where an earlier test of this process already made torch settle on CPU only.
// ctest runs every test in a process of its own, where that cannot happen; a plain run of all tests can.
bool load_cuda_backend() {
  try {
    ensure_cuda_backend();
    return true;
  } catch (const Error& e) {
    if (std::string(e.what()).find("settled on CPU only") == std::string::npos) throw;
    return false;
  }
}

// libtorch_cuda is not linked (it costs every process ~370 MB at start-up); it is loaded when asked for.
TEST(CudaBackend, LoadsOnlyWhenAskedFor) {
  EXPECT_FALSE(is_loaded("libtorch_cuda.so")) << "linked at start-up: autotrain should link torch_cpu and c10 only";
  if (!load_cuda_backend()) GTEST_SKIP() << "torch settled on CPU only in an earlier test; run this test alone";
  EXPECT_TRUE(is_loaded("libtorch_cuda.so"));
  EXPECT_NO_THROW(ensure_cuda_backend());  // a second call is free
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::Tensor x = at::arange(6, at::kFloat);
  EXPECT_TRUE(at::equal((x.to(at::kCUDA) * 2).cpu(), x * 2));
}

TEST(CudaKernels, SelfTestRunsOnTheDevice) {
#ifndef AUTOTRAIN_WITH_CUDA
  GTEST_SKIP() << "built without CUDA kernels";
#else
  EXPECT_FALSE(cuda::compiled_architectures().empty());
  if (!load_cuda_backend()) GTEST_SKIP() << "torch settled on CPU only in an earlier test; run this test alone";
  if (!torch::cuda::is_available() || torch::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(cuda::self_test(), "");
#endif
}

}  // namespace
}  // namespace autotrain
