#include "autotrain/cuda_backend.h"

#include <dlfcn.h>

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <filesystem>
#include <mutex>
#include <string>

#include "autotrain/error.h"

namespace autotrain {

namespace {

const char* const kCudaLibrary = "libtorch_cuda.so";

// The two halves of libtorch must come from one build: take libtorch_cuda.so from libtorch_cpu.so's folder
// (the torch wheel keeps them together), else leave the search to the dynamic loader.
std::string cuda_library_path() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&at::globalContext), &info) == 0 || info.dli_fname == nullptr) return kCudaLibrary;
  return (std::filesystem::path(info.dli_fname).parent_path() / kCudaLibrary).string();
}

// Empty on success, else what went wrong.
std::string load_cuda_backend() {
  const std::string path = cuda_library_path();
  // RTLD_NOW: a missing CUDA library is reported here, not at the first CUDA call. RTLD_GLOBAL: as when
  // linked, so that CUDA extensions loaded later resolve against it.
  if (::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr)
    return std::string("cannot load libtorch's CUDA backend (") + ::dlerror() +
           "); a GPU needs the CUDA build of the torch wheel and its nvidia-* libraries: run tools/setup.sh";
  // ATen looks up its CUDA hooks once (ATen/detail/CUDAHooksInterface.cpp); asked before the library was
  // loaded, it keeps the CPU-only stub for the life of the process.
  if (!at::detail::getCUDAHooks().isBuilt())
    return "libtorch's CUDA backend was loaded after torch had settled on CPU only (it asks once, e.g. in "
           "at::manual_seed); ensure_cuda_backend() must run first (a bug)";
  return "";
}

}  // namespace

void ensure_cuda_backend() {
  static std::once_flag once;
  static std::string problem;
  std::call_once(once, [] { problem = load_cuda_backend(); });
  if (!problem.empty()) throw Error(problem);
}

}  // namespace autotrain
