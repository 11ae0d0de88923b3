// Split layouts of dataset folders against `datasets.load_dataset`, and Hub dataset ids against huggingface_hub
// (fixtures written by tests/reference/parquet_files.py).
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "test_util.h"

namespace autotrain {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kDir = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/parquet";

json expected() { return json::parse(read_file(kDir + "/expected.json")); }

// The cells of `column` in every record of `files`, as data.cpp hands them to the trainers.
json read_column(const DataFiles& files, const std::string& column) {
  json cells = json::array();
  for_each_record_cells(files, {{column, "text_column"}}, [&](const CellRow& row, const std::string&) {
    cells.push_back(json::parse(row[0].dump()));
  });
  return cells;
}

TEST(DatasetLayout, SplitsTakeTheFilesDatasetsTakes) {
  int found = 0, missing = 0;
  const json want = expected();
  for (const auto& [layout, splits] : want["layouts"].items()) {
    for (const auto& [split, texts] : splits.items()) {  // split: "train", or AutoTrain's "CONFIG:SPLIT"
      SCOPED_TRACE(layout + " / " + split);
      const std::string folder = kDir + "/layouts/" + layout;
      if (texts.is_null()) {  // datasets has no such split: neither do we
        EXPECT_THROW(resolve_split_files(folder, split), Error);
        ++missing;
        continue;
      }
      const json ours = read_column(resolve_split_files(folder, split), "text");
      ASSERT_EQ(ours.size(), texts.size());
      for (size_t r = 0; r < ours.size(); ++r) ASSERT_EQ(ours[r], texts[r]) << "record " << r + 1;
      ++found;
    }
  }
  EXPECT_GE(found, 15);  // 6 layouts; the dataset card's 6 configs in 4 YAML styles
  EXPECT_GE(missing, 15);
}

TEST(DatasetLayout, HubDatasetIdReadsTheCachedSnapshot) {
  const json want = expected();
  const std::string cache = kDir + "/cache";
  testing::CacheEnvironment scope({{"HF_HUB_CACHE", cache}});
  const DataFiles files = resolve_split_files("acme/chat-pairs", "train");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(fs::relative(fs::path(files[0]).parent_path().parent_path(), cache).string(),
            want["snapshot"].get<std::string>());
  EXPECT_EQ(read_column(files, "text"), want["snapshot_texts"]);
  const std::string missing = testing::error_message_of([] { resolve_split_files("acme/not-cached", "train"); });
  EXPECT_NE(missing.find("hf download --repo-type dataset"), std::string::npos) << missing;
}

TEST(DatasetLayout, CardConfigErrorsSayWhatToGive) {
  const std::string cards = kDir + "/layouts/";
  std::string message = testing::error_message_of([&] { resolve_split_files(cards + "card_no_default", "train"); });
  EXPECT_NE(message.find("CONFIG:train"), std::string::npos) << message;
  EXPECT_NE(message.find("\"a\", \"b\""), std::string::npos) << message;
  message = testing::error_message_of([&] { resolve_split_files(cards + "card_configs", "xx:train"); });
  EXPECT_NE(message.find("no config \"xx\""), std::string::npos) << message;
  EXPECT_NE(message.find("\"inferred\""), std::string::npos) << message;
  message = testing::error_message_of([&] { resolve_split_files(cards + "card_configs", "fr:test"); });
  EXPECT_NE(message.find("has no split \"test\"; its splits are train"), std::string::npos) << message;
  message = testing::error_message_of([&] { resolve_split_files(cards + "plain_files", "en:train"); });
  EXPECT_NE(message.find("no configs"), std::string::npos) << message;
  EXPECT_THROW(resolve_split_files(cards + "plain_files", "a:b:c"), Error);
}

TEST(DatasetLayout, CardYamlBeyondTheSubsetNamesItsLine) {
  testing::TempDir dir;
  testing::write_text(dir.file("train.jsonl"), "{\"text\": \"x\"}\n");
  testing::write_text(dir.file("README.md"), "---\nlicense: mit\nconfigs:\n- config_name: default\n  data_files: |\n"
                                             "    train.jsonl\n---\n");
  const std::string message = testing::error_message_of([&] { resolve_split_files(dir.path().string(), "train"); });
  EXPECT_NE(message.find("README.md:5"), std::string::npos) << message;
  // A card without configs (license and tags only) leaves the folder's own layout.
  testing::write_text(dir.file("README.md"), "---\nlicense: mit\ntags:\n- text\n---\n# card\n");
  EXPECT_EQ(resolve_split_files(dir.path().string(), "train"), DataFiles{dir.file("train.jsonl")});
}

}  // namespace
}  // namespace autotrain
