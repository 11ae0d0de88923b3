// export-gguf: the file read back by llama.cpp's own Python reader (tests/reference/gguf_check.py, the
// `gguf` package) against the source folder, for llama (sentencepiece, permuted q/k, llama3 rope_freqs)
// qwen2 (BPE, biases, tied embeddings) and qwen3 (q/k norms, head_dim 32 != 64 / 4) in f16 and q8_0; Q8_0 and
// the permutation on their own.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdlib>
#include <filesystem>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/gguf.h"
#include "test_util.h"

namespace autotrain {
namespace {
namespace fs = std::filesystem;
using testing::quote;
using testing::TempDir;

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kModels = kFixtures + "/models/";

int run_gguf_check(const std::string& gguf, const std::string& model, const std::string& type) {
  const std::string command = quote(AUTOTRAIN_PYTHON) + " " +
                              quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/gguf_check.py") +
                              " --fixtures " + quote(kFixtures) + " --gguf " + quote(gguf) + " --model " +
                              quote(model) + " --type " + type + " 2>&1";
  return std::system(command.c_str());
}

TEST(GgufExport, EveryArchitectureReadsBackByGgufPy) {
  for (const std::string model : {"llama", "qwen2", "mistral", "qwen3"}) {
    for (const std::string type : {"f16", "q8_0"}) {
      SCOPED_TRACE(model + " " + type);
      TempDir dir;
      const std::string out = dir.file(model + "." + type + ".gguf");
      auto result = testing::run_autotrain("export-gguf --model " + quote(kModels + model) + " --out " + quote(out) +
                                           " --type " + type);
      ASSERT_EQ(result.exit_code, 0) << result.output;
      EXPECT_EQ(read_file(out).substr(0, 4), "GGUF");
      EXPECT_EQ(fs::file_size(out) % 32, 0u);  // every tensor padded to general.alignment
      EXPECT_EQ(run_gguf_check(out, kModels + model, type), 0);
    }
  }
}

TEST(GgufExport, RefusesAFolderWithoutTokenizer) {
  TempDir dir;
  const std::string model = dir.file("model");
  fs::create_directories(model);
  for (const auto& entry : fs::directory_iterator(kModels + "llama")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("tokenizer", 0) != 0 && name != "special_tokens_map.json") fs::copy(entry.path(), model + "/" + name);
  }
  auto result = testing::run_autotrain("export-gguf --model " + quote(model) + " --out " + quote(dir.file("x.gguf")));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("no tokenizer.model or tokenizer.json"), std::string::npos) << result.output;
  EXPECT_FALSE(fs::exists(dir.file("x.gguf")));
}

TEST(GgufQuant, Q8_0RoundTripWithinHalfAStep) {
  at::manual_seed(3);
  at::Tensor x = at::randn({7, 96}) * at::rand({7, 1}) * 4;
  x[2].zero_();  // an all-zero block: d = 0, codes 0
  at::Tensor blocks = quantize_q8_0(x);
  ASSERT_EQ(blocks.numel(), 7 * 96 / 32 * 34);
  at::Tensor back = dequantize_q8_0(blocks, x.sizes());
  at::Tensor d = x.reshape({-1, 32}).abs().amax(1, true) / 127;
  at::Tensor d16 = d.to(at::kHalf).to(at::kFloat);
  // Rounding to the nearest code is within d/2; the fp16 scale adds at most 127 |d - d16|.
  at::Tensor bound = d / 2 + 127 * (d - d16).abs() + 1e-7;
  EXPECT_TRUE(((back.reshape({-1, 32}) - x.reshape({-1, 32})).abs() <= bound).all().item<bool>());
  EXPECT_TRUE(back[2].eq(0).all().item<bool>());
  EXPECT_THROW(quantize_q8_0(at::randn({3, 40})), Error);
}

TEST(GgufQuant, LlamaPermuteInterleavesTheHalvesOfEachHead) {
  // Two heads of head_dim 4: HF rows (per head) r0 r1 | r2 r3 (halves) -> llama.cpp r0 r2 r1 r3.
  at::Tensor w = at::arange(8, at::kFloat).reshape({8, 1});
  at::Tensor expected = at::tensor({0.f, 2.f, 1.f, 3.f, 4.f, 6.f, 5.f, 7.f}).reshape({8, 1});
  EXPECT_TRUE(at::equal(permute_for_llama_rope(w, 2), expected));
}

}  // namespace
}  // namespace autotrain
