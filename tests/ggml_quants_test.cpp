// The GGUF block quantizers (src/ggml_quants.cpp) against llama.cpp's own: tests/data/ggml_quants/ holds the bytes
// that ggml's quantize_row_*_ref wrote for 43 rows of 512 values, each row a hard case, and those its
// importance-matrix path wrote for them with 43 rows of importance weights (its SOURCES.md says how they were
// made). Ours must be those bytes exactly; our dequantization must give gguf-py's values for them
// (tests/reference/ggml_quants.py), also exactly: both compute each value with the same float32 operations.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstring>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/ggml_quants.h"

namespace autotrain {
namespace {

const std::string kData = std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/data/ggml_quants/";
const std::string kReference = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/ggml_quants/";

GgmlType type_named(const std::string& name) {
  for (GgmlType type : {GgmlType::q4_0, GgmlType::q4_1, GgmlType::q5_0, GgmlType::q5_1, GgmlType::q8_0,
                        GgmlType::q2_K, GgmlType::q3_K, GgmlType::q4_K, GgmlType::q5_K, GgmlType::q6_K,
                        GgmlType::iq4_nl, GgmlType::iq4_xs}) {
    if (name == ggml_type_info(type).name) return type;
  }
  throw Error("no ggml type " + name);
}

at::Tensor bytes_tensor(const std::string& bytes) {
  at::Tensor out = at::empty({int64_t(bytes.size())}, at::kByte);
  std::memcpy(out.data_ptr(), bytes.data(), bytes.size());
  return out;
}

struct Fixture {
  nlohmann::json meta;
  int64_t rows = 0, cols = 0;
  at::Tensor input;  // float32 (rows, cols)
};

Fixture load_fixture() {
  Fixture fixture;
  fixture.meta = parse_json_file(kData + "meta.json", "the fixture is in the repository");
  fixture.rows = fixture.meta.at("rows").get<int64_t>();
  fixture.cols = fixture.meta.at("cols").get<int64_t>();
  fixture.input = bytes_tensor(read_file(kData + "input.f32")).view(at::kFloat).reshape({fixture.rows, fixture.cols});
  return fixture;
}

// Each type's bytes for the fixture's rows against ggml's in `file_key`'s file; with an importance matrix, row r
// quantized with row r of importance.f32 (one of eight kinds: meta.json importance_kinds).
void expect_ggmls_bytes(const Fixture& fixture, const std::string& file_key, bool with_importance) {
  ASSERT_EQ(fixture.meta.at("types").size(), 12u);
  at::Tensor importance;
  if (with_importance)
    importance = bytes_tensor(read_file(kData + fixture.meta.at("importance").get<std::string>()))
                     .view(at::kFloat)
                     .reshape({fixture.rows, fixture.cols});
  for (const auto& entry : fixture.meta.at("types")) {
    const std::string name = entry.at("name");
    SCOPED_TRACE(name);
    const GgmlType type = type_named(name);
    const int64_t block_bytes = entry.at("bytes_per_block"), blocks_per_row = entry.at("blocks_per_row");
    ASSERT_EQ(block_bytes, ggml_type_info(type).block_bytes);
    const std::string expected = read_file(kData + entry.at(file_key).get<std::string>());
    at::Tensor ours;
    if (with_importance) {
      std::vector<at::Tensor> rows;
      for (int64_t r = 0; r < fixture.rows; ++r)
        rows.push_back(ggml_quantize(fixture.input[r].unsqueeze(0), type, importance[r]));
      ours = at::cat(rows);
    } else {
      ours = ggml_quantize(fixture.input, type);
    }
    ASSERT_EQ(uint64_t(ours.numel()), expected.size());
    const auto* got = ours.data_ptr<uint8_t>();
    int mismatched = 0;
    for (int64_t block = 0; block < fixture.rows * blocks_per_row; ++block) {
      if (std::memcmp(got + block * block_bytes, expected.data() + block * block_bytes, size_t(block_bytes)) == 0)
        continue;
      const int64_t row = block / blocks_per_row;
      if (++mismatched <= 3)
        ADD_FAILURE() << "row " << row << " (" << fixture.meta.at("row_kinds").at(row).get<std::string>()
                      << (with_importance
                              ? "; importance " + fixture.meta.at("importance_kinds").at(row).get<std::string>()
                              : "")
                      << "), block " << block % blocks_per_row << " differs from ggml's";
    }
    EXPECT_EQ(mismatched, 0);
  }
}

TEST(GgmlQuants, EachTypeGivesGgmlsOwnBytes) { expect_ggmls_bytes(load_fixture(), "file", false); }

// llama-quantize --imatrix: ggml's quantize_<type> with importance weights (quantize_row_<type>_impl).
TEST(GgmlQuants, WithAnImportanceMatrixEachTypeGivesGgmlsOwnBytes) {
  expect_ggmls_bytes(load_fixture(), "imatrix_file", true);
}

TEST(GgmlQuants, AnImportanceMatrixOfAnotherLengthIsRefused) {
  EXPECT_THROW(ggml_quantize(at::randn({2, 512}), GgmlType::q4_K, at::ones({256})), Error);
}

TEST(GgmlQuants, DequantizationGivesGgufPysValues) {
  const Fixture fixture = load_fixture();
  for (const auto& entry : fixture.meta.at("types")) {
    const std::string name = entry.at("name");
    SCOPED_TRACE(name);
    const at::Tensor ours = ggml_dequantize(bytes_tensor(read_file(kData + entry.at("file").get<std::string>())),
                                            type_named(name), {fixture.rows, fixture.cols});
    const at::Tensor theirs =
        bytes_tensor(read_file(kReference + name + ".f32")).view(at::kFloat).reshape({fixture.rows, fixture.cols});
    EXPECT_TRUE(at::equal(ours, theirs)) << "max |difference| " << (ours - theirs).abs().max().item<float>();
  }
}

TEST(GgmlQuants, RowsOfPartialBlocksAreRefused) {
  EXPECT_THROW(ggml_quantize(at::randn({2, 100}), GgmlType::q4_K), Error);  // 256-value blocks
  EXPECT_THROW(ggml_quantize(at::randn({2, 48}), GgmlType::q4_0), Error);   // 32-value blocks
  EXPECT_EQ(ggml_bytes(GgmlType::q6_K, 512), 420u);
  EXPECT_EQ(ggml_bytes(GgmlType::q2_K, 512), 168u);
  EXPECT_EQ(ggml_bytes(GgmlType::q3_K, 512), 220u);
  EXPECT_EQ(ggml_bytes(GgmlType::bf16, 10), 20u);
}

}  // namespace
}  // namespace autotrain
