#include "test_util.h"

#include <gtest/gtest.h>

#include "autotrain/cuda_backend.h"
#include "autotrain/error.h"
#include "autotrain/quant.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <random>
#include <stdexcept>

namespace autotrain::testing {

bool load_cuda_backend() {
  try {
    ensure_cuda_backend();
    return true;
  } catch (const Error& e) {
    if (std::string(e.what()).find("settled on CPU only") == std::string::npos) throw;
    return false;
  }
}

TempDir::TempDir() {
  std::random_device random;
  path_ = std::filesystem::temp_directory_path() /
          ("autotrain-test-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

TrainingParams oracle_training_params(const nlohmann::json& settings) {
  nlohmann::json keys = {{"peft", true}};
  for (const char* key : {"lr", "scheduler", "optimizer", "batch_size", "gradient_accumulation", "epochs",
                          "warmup_ratio", "weight_decay", "max_grad_norm", "seed", "lora_r", "lora_alpha",
                          "lora_dropout", "valid_split", "eval_strategy", "logging_steps"})
    if (settings.contains(key)) keys[key] = settings[key];
  return parse_training_params(keys, "the oracle's settings.json");
}

std::string error_message_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string quote(const std::string& argument) {
  std::string quoted = "'";
  for (char c : argument) {
    if (c == '\'') quoted += "'\\''";
    else quoted += c;
  }
  return quoted + "'";
}

RunResult run_autotrain(const std::string& arguments, const std::string& cwd) {
  return run_command("cd " + quote(cwd) + " && " + quote(AUTOTRAIN_BINARY) + " " + arguments);
}

RunResult run_command(const std::string& shell_command) {
  std::string command = "(" + shell_command + ") 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed");
  std::string output;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  int status = ::pclose(pipe);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, output};
}

namespace {

// Heavy tails (real weights are not uniform); with `special`, also an all-zero block, NaN, +-infinity,
// -0 and a block of subnormals (absmax below bitsandbytes' 1e-38 floor).
at::Tensor quantization_input(const std::vector<int64_t>& shape, at::ScalarType dtype, bool special) {
  at::Tensor w = (at::randn(shape) * at::rand(shape).pow(3) * 0.2).reshape(-1);
  if (special) {
    w.slice(0, 0, 64).zero_();
    w[64] = -0.0f;
    w[100] = NAN;
    w[300] = INFINITY;
    w[700] = -INFINITY;
    w.slice(0, 1024, 1088).copy_(at::randn({64}) * 1e-40);
  }
  return w.to(dtype).reshape(shape);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

void expect_torch_quantization_equals_the_loop(at::Device device) {
  at::manual_seed(17);
  struct Case {
    std::vector<int64_t> shape;
    bool special;
  };
  // 3x7 and 1x1: less than one block; 37x53, 129x200 and 5x301: a partial last block (37x53 an odd one);
  // 4x64: whole blocks only.
  const std::vector<Case> cases = {{{1, 1}, false},   {{3, 7}, false},    {{37, 53}, false},
                                   {{129, 200}, false}, {{5, 301}, false}, {{4, 64}, false},
                                   {{129, 200}, true}};
  for (const Case& c : cases)
    for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      const at::Tensor weight = quantization_input(c.shape, dtype, c.special);
      for (QuantType type : {QuantType::nf4, QuantType::fp4})
        for (bool double_quantize : {false, true})
          for (int64_t blocksize : {64, 256}) {
            SCOPED_TRACE(::testing::Message() << (type == QuantType::nf4 ? "nf4" : "fp4") << " shape "
                                              << at::IntArrayRef(c.shape) << (c.special ? " (special values) " : " ")
                                              << dtype << " blocksize " << blocksize
                                              << (double_quantize ? " double" : "") << " on " << device);
            const Quantized4bit loop = quantize_4bit(weight, type, blocksize, double_quantize);
            const Quantized4bit ops = quantize_4bit_torch(weight.to(device), type, blocksize, double_quantize);
            EXPECT_EQ(ops.shape, loop.shape);
            EXPECT_EQ(ops.double_quantized, loop.double_quantized);
            EXPECT_EQ(ops.packed.device(), device);
            EXPECT_EQ(ops.absmax.device(), device);
            EXPECT_TRUE(at::equal(ops.packed.cpu(), loop.packed));
            EXPECT_TRUE(at::equal(ops.absmax.cpu(), loop.absmax));
            if (!double_quantize) continue;
            EXPECT_TRUE(same_bits(ops.offset, loop.offset)) << ops.offset << " vs " << loop.offset;
            EXPECT_TRUE(at::equal(ops.nested.codes.cpu(), loop.nested.codes));
            EXPECT_TRUE(at::equal(ops.nested.absmax.cpu(), loop.nested.absmax));
          }
    }
}

}  // namespace autotrain::testing
