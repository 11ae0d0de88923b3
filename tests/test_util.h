// Helpers shared by the tests: temporary folders, running the autotrain binary, and checks that more than one
// test file runs (on the CPU and on a GPU).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/cuda_ops.h"

namespace autotrain::testing {

// A fresh folder under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void write_text(const std::string& path, const std::string& text);

// The optimizer and schedule settings an oracle script wrote to its settings.json (lr, scheduler, optimizer,
// batch_size, gradient_accumulation, epochs, warmup_ratio, weight_decay, max_grad_norm, seed, and lora_r /
// lora_alpha when present), read by parse_training_params over AutoTrain's defaults, with peft on.
TrainingParams oracle_training_params(const nlohmann::json& settings);

// Sets the variables of the cache's location for its lifetime (unset when absent from `values`), then restores.
class CacheEnvironment {
 public:
  explicit CacheEnvironment(const std::map<std::string, std::string>& values) {
    for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"}) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      auto value = values.find(name);
      if (value == values.end()) {
        ::unsetenv(name);
      } else {
        ::setenv(name, value->second.c_str(), 1);
      }
    }
  }
  ~CacheEnvironment() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }
  CacheEnvironment(const CacheEnvironment&) = delete;
  CacheEnvironment& operator=(const CacheEnvironment&) = delete;

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

// The message of the autotrain::Error that `action` throws, or "(no error)".
std::string error_message_of(const std::function<void()>& action);

struct RunResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs the built autotrain binary with `arguments` (a shell-quoted string) in folder `cwd`.
RunResult run_autotrain(const std::string& arguments, const std::string& cwd = ".");
// Runs a shell command line; stdout and stderr together.
RunResult run_command(const std::string& shell_command);

// Shell-quotes one argument.
std::string quote(const std::string& argument);

// ensure_cuda_backend(), false where an earlier test of this process already made torch settle on CPU only.
// ctest runs every test in a process of its own, where that cannot happen; a plain run of all tests can.
bool load_cuda_backend();

// Skips the calling test unless this build has the CUDA kernels and the machine a GPU.
#define REQUIRE_CUDA_DEVICE()                                                                                  \
  do {                                                                                                          \
    if (!::autotrain::cuda_kernels_built()) GTEST_SKIP() << "built without CUDA kernels";                      \
    if (!::autotrain::testing::load_cuda_backend())                                                             \
      GTEST_SKIP() << "torch settled on CPU only in an earlier test; run alone";                               \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";                                         \
  } while (0)

// quantize_4bit_torch on `device` against quantize_4bit on the CPU, byte for byte (packed codes, absmax,
// nested 8-bit codes and absmax, offset) over NF4 / FP4, double quantization off / on, blocksizes 64 / 256,
// fp32 / fp16 / bf16 and odd sizes (partial last blocks, odd counts), with zeros, NaN, infinities and
// subnormal blocks in one of them. gtest failures name the case.
void expect_torch_quantization_equals_the_loop(at::Device device);

}  // namespace autotrain::testing
