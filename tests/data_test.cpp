// Dataset readers against Python's json / csv modules, and packing against AutoTrain's group_texts
// (fixtures written by tests/reference/dataset_files.py).
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "test_util.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;

const std::string kDir = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/datasets";

nlohmann::json expected() { return nlohmann::json::parse(read_file(kDir + "/expected.json")); }

std::vector<std::string> read_all(const std::string& path, const std::string& column = "text") {
  std::vector<std::string> texts;
  int64_t count = for_each_text({path}, column, [&](const std::string& t) { texts.push_back(t); });
  EXPECT_EQ(count, static_cast<int64_t>(texts.size()));
  return texts;
}

TEST(Dataset, EveryFormatReadsWhatPythonReads) {
  auto want = expected();
  for (const char* format : {"jsonl", "json", "csv", "txt"}) {
    auto texts = read_all(kDir + "/train." + format);
    EXPECT_EQ(texts, want[format].get<std::vector<std::string>>()) << format;
  }
  EXPECT_EQ(read_all(kDir + "/lines.json"), want["json_lines"].get<std::vector<std::string>>());
  // Compressed whole (.gz: two gzip members; .zst: two zstd frames), decompressed as they are read.
  EXPECT_EQ(read_all(kDir + "/records.jsonl.gz"), want["jsonl"].get<std::vector<std::string>>());
  EXPECT_EQ(read_all(kDir + "/records.csv.zst"), want["csv"].get<std::vector<std::string>>());
}

TEST(Dataset, CompressedFilesCutOrDamagedAreErrorsNamingThem) {
  testing::TempDir dir;
  for (const char* name : {"records.jsonl.gz", "records.csv.zst"}) {
    const std::string bytes = read_file(kDir + "/" + name);
    const std::string path = dir.file(name);
    testing::write_text(path, bytes.substr(0, bytes.size() - 9));
    std::string message = testing::error_message_of([&] { read_all(path); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
    std::string damaged = bytes;
    damaged[damaged.size() / 3] ^= 0x5A;
    damaged[damaged.size() / 3 + 1] ^= 0x33;
    testing::write_text(path, damaged);
    message = testing::error_message_of([&] { read_all(path); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
  }
  // Zero padding after the last gzip member is skipped, as gzip and Python's gzip module skip it.
  testing::write_text(dir.file("padded.jsonl.gz"), read_file(kDir + "/records.jsonl.gz") + std::string(70000, '\0'));
  EXPECT_EQ(read_all(dir.file("padded.jsonl.gz")), expected()["jsonl"].get<std::vector<std::string>>());
  // A split of compressed shards, as the Hub stores some (data/train-00000-of-00001.jsonl.gz).
  fs::create_directories(dir.path() / "hub" / "data");
  fs::copy_file(kDir + "/records.jsonl.gz", dir.path() / "hub" / "data" / "train-00000-of-00001.jsonl.gz");
  const DataFiles files = resolve_split_files((dir.path() / "hub").string(), "train");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(read_all(files[0]), expected()["jsonl"].get<std::vector<std::string>>());
}

TEST(Dataset, FolderAndSplitFollowAutoTrainsLayout) {
  EXPECT_EQ(resolve_split_files(kDir, "train"), DataFiles{kDir + "/train.jsonl"});  // .jsonl first
  EXPECT_EQ(resolve_split_files(kDir + "/train.csv", "ignored"), DataFiles{kDir + "/train.csv"});
  try {
    resolve_split_files(kDir, "validation");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("validation.jsonl"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_split_files("/nonexistent/data", "train"), Error);
}

// Each bad file: the message must name the file and carry `fragment`.
void expect_bad(const std::string& name, const std::string& contents, const std::string& fragment,
                const std::string& column = "text") {
  testing::TempDir dir;
  std::string path = dir.file(name);
  testing::write_text(path, contents);
  try {
    read_all(path, column);
    ADD_FAILURE() << name << ": expected an error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
  }
}

// Parquet and Arrow files (written by tests/reference/parquet_files.py and arrow_files.py): a column the dataset
// lacks is an error naming the file, the key that names the column and the columns the file has.
TEST(Dataset, ColumnarFilesNameTheMissingColumnsKeyAndTheColumnsFound) {
  const std::string fixtures = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/";
  for (const std::string path : {fixtures + "parquet/files/snappy_dictionary_v1.parquet",
                                 fixtures + "arrow/files/stream.arrow"}) {
    const std::string message = testing::error_message_of(
        [&] { for_each_record({path}, {{"prompt", "prompt_text_column"}}, [](const Row&) {}); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find("prompt_text_column"), std::string::npos) << message;
    EXPECT_NE(message.find("messages"), std::string::npos) << message;
  }
}

TEST(Dataset, BadInputIsOneLineNamingFileAndLine) {
  expect_bad("a.jsonl", "{\"prompt\": \"x\", \"answer\": \"y\"}\n", "columns found: prompt, answer");  // in file order
  expect_bad("b.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n", ":2: column \"text\" is 5");
  expect_bad("c.jsonl", "{\"text\": \"ok\"}\n{broken\n", ":2: not valid JSON");
  expect_bad("d.jsonl", "{\"text\": \"caf\xE9\"}\n", ":1: not valid UTF-8");
  expect_bad("e.jsonl", "\n  \n", "has no texts");
  expect_bad("f.csv", "id,body\n1,hello\n", "columns found: id, body");
  expect_bad("g.csv", "text,other\n\"never closed,1\n", "never closed");
  expect_bad("h.csv", "text,other\nhello,1,extra\n", "3 fields, the header has 2");
  expect_bad("i.csv", "", "empty CSV");
  expect_bad("j.txt", "fine\n\xFF\xFE\n", ":2: not valid UTF-8");
  expect_bad("k.xlsx", "PK", "unknown dataset format");
  expect_bad("k.arrow", "ARROW1", "not Arrow IPC");
  expect_bad("k.parquet", "PAR1", "not a Parquet file");
  expect_bad("k.parquet.gz", "PAR1", "a Parquet file compressed whole, which autotrain does not read; decompress it");
  expect_bad("k.arrow.zst", "ARROW1", "an Arrow file compressed whole, which autotrain does not read; decompress it");
  expect_bad("l.json", "{\"text\": \"a line\"}\n[1, 2]\n", ":2: expected a JSON object per record");
}

TEST(Dataset, ARecordOverTheLimitIsRefusedNamingTheLine) {
  const std::string longest(kMaxRecordBytes, 'a');
  {
    testing::TempDir dir;
    testing::write_text(dir.file("ok.txt"), "short\n" + longest + "\nlast");  // exactly the limit is read
    auto texts = read_all(dir.file("ok.txt"));
    ASSERT_EQ(texts.size(), 3u);
    EXPECT_EQ(texts[1], longest);
    EXPECT_EQ(texts[2], "last");
  }
  const std::string too_long = longest + "a";
  expect_bad("m.txt", "short\n" + too_long, ":2: a record longer than 16 MiB; each text is tokenized whole");
  expect_bad("n.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"" + too_long + "\"}\n", ":2: a record longer than 16 MiB");
  expect_bad("o.csv", "text\nok\n\"" + too_long + "\"\n", ":3: a record longer than 16 MiB");
  expect_bad("p.csv", "text\nok\n" + too_long + "\n", ":3: a record longer than 16 MiB");
  expect_bad("q.json", "[{\"text\": \"ok\"}, {\"text\": \"" + too_long + "\"}]", ":2: a record longer than 16 MiB");
}

TEST(Dataset, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("한국어 😀"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // a UTF-16 surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));          // truncated
}

TEST(BlockPacker, EqualsAutoTrainsGroupTexts) {
  auto want = expected();
  auto id_lists = want["id_lists"].get<std::vector<std::vector<int32_t>>>();
  for (const auto& [size, blocks] : want["packing"].items()) {
    BlockPacker packer(std::stoll(size));
    std::vector<std::vector<int32_t>> got;
    for (const auto& ids : id_lists) {
      packer.add(ids);
      while (packer.has_block()) got.push_back(packer.take_block());  // streaming, as training reads
    }
    EXPECT_EQ(got, blocks.get<std::vector<std::vector<int32_t>>>()) << "block_size " << size;
    EXPECT_LT(packer.pending_tokens(), std::stoll(size)) << "only the dropped remainder is left";
  }
}

}  // namespace
}  // namespace autotrain
