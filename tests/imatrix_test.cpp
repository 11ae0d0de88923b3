// Importance-matrix files (src/imatrix.cpp) against llama.cpp's formats as tests/reference/imatrix_files.py writes
// them (GGUF through gguf-py's writer, the legacy .dat as llama-imatrix's save_imatrix_legacy lays it out) and the
// values llama-quantize derives from them (sums / count; stored / ncall), exactly: both divide float32 by float32.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/imatrix.h"
#include "test_util.h"

namespace autotrain {
namespace {
using testing::quote;
using testing::TempDir;

const std::string kWideLlama = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/gguf/llama_wide";

// imatrix_files.py for the 12-layer llama fixture; `extra`: its options.
void write_imatrix(const std::string& out, const std::string& extra) {
  const std::string command = quote(AUTOTRAIN_PYTHON) + " " +
                              quote(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/reference/imatrix_files.py") +
                              " --model " + quote(kWideLlama) + " --out " + quote(out) + " " + extra + " 2>&1";
  const auto result = testing::run_command(command);
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

TEST(Imatrix, ReadsBothOfLlamaImatrixsFormatsAsLlamaQuantizeDoes) {
  TempDir dir;
  for (const std::string format : {"gguf", "dat"}) {
    SCOPED_TRACE(format);
    const std::string file = dir.file("m." + format), expected_file = dir.file(format + ".json");
    write_imatrix(file, "--format " + format + " --expected " + quote(expected_file));
    const nlohmann::json expected = parse_json_file(expected_file, "the oracle wrote it");
    const ImportanceMatrix imatrix = load_imatrix(file);
    EXPECT_EQ(imatrix.path, file);
    EXPECT_EQ(imatrix.datasets, expected.at("datasets").get<std::vector<std::string>>());
    EXPECT_EQ(imatrix.chunk_count, expected.at("chunk_count").get<int64_t>());
    ASSERT_EQ(imatrix.values.size(), expected.at("values").size());
    ASSERT_EQ(imatrix.values.size(), 12u * 7 + 1);  // every layer's seven products and output.weight
    for (const auto& [name, values] : expected.at("values").items()) {
      ASSERT_TRUE(imatrix.values.count(name)) << name;
      const std::vector<float>& got = imatrix.values.at(name);
      ASSERT_EQ(got.size(), values.size()) << name;
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], values[i].get<float>()) << name << "[" << i << "]";
    }
  }
}

TEST(Imatrix, BrokenFilesAreErrorsNamingTheFile) {
  TempDir dir;
  for (const std::string format : {"gguf", "dat"}) {
    SCOPED_TRACE(format);
    const std::string whole = dir.file("whole." + format);
    write_imatrix(whole, "--format " + format);
    const std::string bytes = read_file(whole);
    // Cut anywhere before the last entry's end (the .dat's trailer of chunk count and dataset is optional, and a
    // GGUF's last tensor is followed by up to 31 bytes of padding): an error naming the file, never a crash.
    const size_t tail = format == "dat" ? 4 + 4 + std::string("calibration.txt").size() : 32;
    int cuts = 0;
    for (size_t cut = 0; cut + tail < bytes.size(); cut += cut < 256 ? 1 : 509) {
      const std::string file = dir.file("cut." + format);
      write_file_atomic(file, bytes.substr(0, cut));
      const std::string message = testing::error_message_of([&] { load_imatrix(file); });
      ASSERT_NE(message.find(file), std::string::npos) << "cut at " << cut << ": " << message;
      ++cuts;
    }
    EXPECT_GT(cuts, 400);
  }
  const std::string nan = dir.file("nan.gguf");
  write_imatrix(nan, "--nan blk.3.ffn_down.weight");
  const std::string message = testing::error_message_of([&] { load_imatrix(nan); });
  EXPECT_NE(message.find("blk.3.ffn_down.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("not finite"), std::string::npos) << message;
  const std::string no_counts = dir.file("no_counts.gguf");
  write_imatrix(no_counts, "--no-counts blk.0.attn_q.weight");
  EXPECT_NE(testing::error_message_of([&] { load_imatrix(no_counts); }).find("blk.0.attn_q.weight has sums but no"),
            std::string::npos);
  EXPECT_NE(testing::error_message_of([&] { load_imatrix(dir.file("absent.gguf")); }).find("absent.gguf"),
            std::string::npos);
}

}  // namespace
}  // namespace autotrain
