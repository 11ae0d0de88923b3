// The Arrow IPC reader against pyarrow, and save_to_disk folders against datasets' load_from_disk (fixtures written
// by tests/reference/arrow_files.py). Values are compared exactly: strings byte for byte, integers, floats and
// booleans as the same JSON numbers (float32 widened to double on both sides), nulls and empty lists as such.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "autotrain/arrow.h"
#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/finetune.h"
#include "autotrain/token_cache.h"
#include "autotrain/tokenizer.h"
#include "columnar_test_util.h"
#include "test_util.h"

namespace autotrain {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kDir = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/arrow";

json expected() { return json::parse(read_file(kDir + "/expected.json")); }

// The rows of `path` as JSON objects of `columns` (all of them when empty).
json read_rows(const std::string& path, const std::vector<std::string>& columns = {}) {
  return testing::columnar_rows<ArrowFile>(path, columns);
}

TEST(Arrow, EveryWritersLayoutReadsAsPyarrowReadsIt) {
  const json want = expected()["files"];
  ASSERT_GE(want.size(), 10u);
  for (const auto& [name, rows] : want.items()) {
    SCOPED_TRACE(name);
    // unread_types: the columns pyarrow's rows hold (text, lists of lists, nulls); the others are stepped over.
    const std::string path = kDir + "/files/" + name + ".arrow";
    const json ours = name == "unread_types" ? read_rows(path, {"text", "nested", "nothing"}) : read_rows(path);
    ASSERT_EQ(ours.size(), rows.size());
    for (size_t r = 0; r < rows.size(); ++r) EXPECT_EQ(ours[r], rows[r]) << "row " << r + 1;
  }
}

TEST(Arrow, ColumnsOfTypesNotReadAreRefusedByName) {
  const json unread = expected()["unread_columns"];
  ASSERT_GE(unread.size(), 5u);  // timestamp, decimal, dictionary, binary, map (+ float16, string view)
  const std::string path = kDir + "/files/unread_types.arrow";
  for (const auto& [column, type] : unread.items()) {
    SCOPED_TRACE(column + " " + type.get<std::string>());
    const std::string message = testing::error_message_of([&] { read_rows(path, {column}); });
    EXPECT_NE(message.find(path + ": column \"" + column + "\" holds "), std::string::npos) << message;
    EXPECT_NE(message.find("cast it to strings"), std::string::npos) << message;  // what to do
  }
}

// datasets' save_to_disk folders, as AutoTrain reads its own prepared data (load_from_disk(data_path)[split]), and
// a Hub folder of .arrow shards as load_dataset reads it.
TEST(Arrow, SavedToDiskAndHubFoldersTakeTheRowsDatasetsTakes) {
  int found = 0, missing = 0;
  const json layouts = expected()["layouts"];
  for (const auto& [layout, splits] : layouts.items()) {
    for (const auto& [split, texts] : splits.items()) {
      SCOPED_TRACE(layout + " / " + split);
      const std::string folder = kDir + "/layouts/" + layout;
      if (texts.is_null()) {
        EXPECT_NE(testing::error_message_of([&] { resolve_split_files(folder, split); }).find(folder),
                  std::string::npos);
        ++missing;
        continue;
      }
      json ours = json::array();
      for_each_record_cells(resolve_split_files(folder, split), {{"text", "text_column"}},
                            [&](const CellRow& row, const std::string&) {
                              ours.push_back(json::parse(row[0].dump()));
                            });
      ASSERT_EQ(ours, texts);
      ++found;
    }
  }
  EXPECT_EQ(found, 5);  // saved_dict train / validation, saved_dataset, hub_arrow train / test
  EXPECT_EQ(missing, 2);
  // One saved Dataset is the train split alone; a DatasetDict names the splits it has.
  const std::string message =
      testing::error_message_of([&] { resolve_split_files(kDir + "/layouts/saved_dataset", "validation"); });
  EXPECT_NE(message.find("valid_split"), std::string::npos) << message;
  const std::string dict_message =
      testing::error_message_of([&] { resolve_split_files(kDir + "/layouts/saved_dict", "test"); });
  EXPECT_NE(dict_message.find("train, validation"), std::string::npos) << dict_message;
}

// AutoTrain's default trainer on its own prepared data: data_path "PROJECT/autotrain-data" saved by save_to_disk,
// null texts read as empty ones (pandas' fillna("")), each text then eos.
TEST(Arrow, TrainingReadsASavedDatasetDictAsAutoTrainDoes) {
  TrainingParams params;
  params.model = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/llama";
  params.data_path = kDir + "/layouts/saved_dict";
  params.text_column = "text";
  const auto tokenizer = Tokenizer::load(params.model);
  const std::string eos = tokenizer->decode({*tokenizer->eos_id()});
  const json texts = expected()["layouts"]["saved_dict"];
  for (const std::string split : {"train", "validation"}) {
    SCOPED_TRACE(split);
    std::vector<int64_t> want;
    for (const json& text : texts[split])
      for (int64_t id : tokenizer->encode((text.is_null() ? "" : text.get<std::string>()) + eos, true))
        want.push_back(id);
    testing::TempDir cache;
    const TokenizedText tokens = tokenize_split(params, *tokenizer, split, cache.path().string());
    ASSERT_EQ(tokens.size(), static_cast<int64_t>(want.size()));
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(tokens.ids()[i], want[i]) << "token " << i;
  }
}

// Truncated and corrupted files: an Error naming the file, never a crash or a hang. The metadata's offsets, the
// field nodes' lengths and the buffers' offsets are all reached by flipping bytes anywhere.
TEST(Arrow, TruncatedOrCorruptFilesAreErrorsNamingTheFile) {
  testing::TempDir dir;
  const std::string path = dir.file("broken.arrow");
  std::mt19937 random(11);
  for (const char* name : {"stream", "file_format", "zstd_body", "large_types", "lz4_body", "dictionary_deltas"}) {
    SCOPED_TRACE(name);
    const std::string bytes = read_file(kDir + "/files/" + name + ".arrow");
    // Cut inside the schema, inside a batch's metadata, inside a body (the end marker's 8 bytes may go: a stream
    // that ends between messages is whole, as pyarrow reads it; the file format's footer may not).
    testing::expect_damage_named(bytes, path, {0, 5, 200, bytes.size() / 2, bytes.size() - 9}, 150, random,
                                 [&] { read_rows(path); });
  }
}

}  // namespace
}  // namespace autotrain
