// The Parquet reader against pyarrow (fixtures written by tests/reference/parquet_files.py). Values are compared
// exactly: strings byte for byte, integers, floats and booleans as the same JSON numbers (float32 widened to double
// on both sides), nulls and empty lists as such.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/finetune.h"
#include "autotrain/parquet.h"
#include "autotrain/token_cache.h"
#include "autotrain/tokenizer.h"
#include "columnar_test_util.h"
#include "test_util.h"

namespace autotrain {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kDir = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/parquet";

json expected() { return json::parse(read_file(kDir + "/expected.json")); }

// Every row of `path` as a JSON object of all its columns.
json read_rows(const std::string& path) { return testing::columnar_rows<ParquetFile>(path); }

TEST(Parquet, EveryWritersLayoutReadsAsPyarrowReadsIt) {
  const json want = expected()["files"];
  ASSERT_GE(want.size(), 9u);
  for (const auto& [name, rows] : want.items()) {
    SCOPED_TRACE(name);
    const json ours = read_rows(kDir + "/files/" + name + ".parquet");
    ASSERT_EQ(ours.size(), rows.size());
    for (size_t r = 0; r < rows.size(); ++r) EXPECT_EQ(ours[r], rows[r]) << "row " << r + 1;
  }
}

TEST(Parquet, CodecsNotReadAreRefusedByName) {
  const json refused = expected()["refused"];
  for (const auto& [codec, name] : refused.items()) {
    const std::string path = kDir + "/files/" + codec + ".parquet";
    const std::string message = testing::error_message_of([&] { read_rows(path); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(name.get<std::string>()), std::string::npos) << message;
    EXPECT_NE(message.find("zstd"), std::string::npos) << message;  // what to do
  }
}

TEST(Parquet, NullTextNamesTheRow) {
  // Row 6 of the fixture has a null text (i % 11 == 5).
  const std::string path = kDir + "/files/zstd_v2.parquet";
  const std::string message =
      testing::error_message_of([&] { for_each_text({path}, "text", [](const std::string&) {}); });
  EXPECT_NE(message.find(path + ", row 6"), std::string::npos) << message;
}

// AutoTrain's default trainer reads its data through pandas and fillna(""): a null text is an empty one, so it
// gives its eos alone. The sft trainer (TRL) has no such step, so a null stays an error there.
TEST(Parquet, NullTextsAreEmptyForTheDefaultTrainerAsInAutoTrain) {
  TrainingParams params;
  params.model = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/llama";
  params.data_path = kDir + "/files/zstd_v2.parquet";
  params.text_column = "text";
  const auto tokenizer = Tokenizer::load(params.model);
  const std::string eos = tokenizer->decode({*tokenizer->eos_id()});
  std::vector<int64_t> want;
  int nulls = 0;
  const json rows = expected()["files"]["zstd_v2"];
  for (const json& row : rows) {
    nulls += row["text"].is_null();
    for (int64_t id : tokenizer->encode((row["text"].is_null() ? "" : row["text"].get<std::string>()) + eos, true))
      want.push_back(id);
  }
  ASSERT_EQ(nulls, 3);
  testing::TempDir cache;
  const TokenizedText tokens = tokenize_split(params, *tokenizer, "train", cache.path().string());
  ASSERT_EQ(tokens.size(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(tokens.ids()[i], want[i]) << "token " << i;
  params.trainer = "sft";
  const std::string message =
      testing::error_message_of([&] { tokenize_split(params, *tokenizer, "train", cache.path().string()); });
  EXPECT_NE(message.find("row 6: column \"text\" is null"), std::string::npos) << message;
}

// Truncated and corrupted files: an Error naming the file, never a crash or a hang. Each byte of the footer and
// page headers is a length, a count or an offset somewhere, so flipping bytes anywhere reaches every check.
TEST(Parquet, TruncatedOrCorruptFilesAreErrorsNamingTheFile) {
  const std::string bytes = read_file(kDir + "/files/tiny_pages_and_groups.parquet");
  testing::TempDir dir;
  const std::string path = dir.file("broken.parquet");
  std::mt19937 random(7);
  testing::expect_damage_named(bytes, path, {0, 3, 11, bytes.size() / 2, bytes.size() - 9, bytes.size() - 1}, 400,
                               random, [&] { read_rows(path); });
}

TEST(Parquet, SnappyRefusesCorruptStreams) {
  // "abcd" as a literal then a copy of 4 from offset 4: "abcdabcd".
  const uint8_t good[] = {8, 3 << 2, 'a', 'b', 'c', 'd', 1 | (0 << 2), 4};
  EXPECT_EQ(snappy_decompress(good, sizeof good, 8, "t"), "abcdabcd");
  const uint8_t far[] = {8, 3 << 2, 'a', 'b', 'c', 'd', 1, 5};  // an offset before the start
  EXPECT_THROW(snappy_decompress(far, sizeof far, 8, "t"), Error);
  EXPECT_THROW(snappy_decompress(good, sizeof good, 9, "t"), Error);      // a length the page does not state
  EXPECT_THROW(snappy_decompress(good, sizeof good - 1, 8, "t"), Error);  // cut short
}

}  // namespace
}  // namespace autotrain
