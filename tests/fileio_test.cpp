#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "test_util.h"

namespace autotrain {
namespace {

TEST(WriteFileAtomic, ReplacesTheFileWhole) {
  testing::TempDir dir;
  write_file_atomic(dir.file("a.json"), "old");
  write_file_atomic(dir.file("a.json"), "new contents");
  EXPECT_EQ(read_file(dir.file("a.json")), "new contents");
  int entries = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1) << "no temporary file left behind";
}

TEST(WriteFileAtomic, DiskFullKeepsThePreviousFile) {
  // A file-size limit makes write() fail part-way, as a full disk does; run it in a child process so the
  // limit does not reach the rest of the tests.
  testing::TempDir dir;
  const std::string path = dir.file("params.json");
  write_file_atomic(path, "previous");
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    try {
      write_file_atomic(path, std::string(1 << 20, 'x'));
    } catch (const Error& e) {
      ::_exit(std::string(e.what()).find(path) != std::string::npos ? 0 : 2);
    }
    ::_exit(1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: no error raised, 2: the error does not name the file";
  EXPECT_EQ(read_file(path), "previous");
  int entries = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator(dir.path())) ++entries;
  EXPECT_EQ(entries, 1) << "the temporary file is removed";
}

TEST(WriteFileAtomic, NeverReplacesADevice) {
  EXPECT_THROW(write_file_atomic("/dev/null", "data"), Error);
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/null"));
}

TEST(WriteFileAtomic, MissingFolderIsNamed) {
  try {
    write_file_atomic("/nonexistent-folder/x.json", "data");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-folder/x.json"), std::string::npos) << e.what();
  }
}

TEST(ReadFile, MissingFileIsNamed) {
  try {
    read_file("/nonexistent-file.txt");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-file.txt"), std::string::npos) << e.what();
  }
}

// Every JSON file autotrain reads (a model's config.json and tokenizer files, adapter_config.json, a checkpoint's
// trainer_state.json, save_to_disk's state.json, the GPU catalogue) goes through parse_json_file: one line with the
// file, where parsing stopped and what to do.
TEST(ParseJsonFile, MalformedJsonIsOneLineNamingTheFileTheByteAndWhatToDo) {
  testing::TempDir dir;
  const std::string path = dir.file("config.json");
  const std::string truncated = "{\"hidden_size\": 64, \"vocab\"";  // cut off: parsing stops at its end
  testing::write_text(path, truncated);
  const std::string cut = testing::error_message_of([&] { parse_json_file(path, "copy it again"); });
  // nlohmann counts bytes from 1: the end of the text is byte size + 1.
  EXPECT_EQ(cut, path + ": not valid JSON (at byte " + std::to_string(truncated.size() + 1) +
                     "); the file is truncated or damaged: copy it again");
  testing::write_text(path, "{\"rope_theta\": 1e999}");
  const std::string huge = testing::error_message_of([&] { parse_json_file(path, "copy it again"); });
  EXPECT_EQ(huge.rfind(path + ": not valid JSON (", 0), 0u) << huge;
  EXPECT_NE(huge.find("); copy it again"), std::string::npos) << huge;
  EXPECT_EQ(huge.find('\n'), std::string::npos) << huge;
  testing::write_text(path, "{\"a\": [1, 2]}");
  EXPECT_EQ(parse_json_file(path, "")["a"][1], 2);
  EXPECT_NE(testing::error_message_of([&] { parse_json_file(dir.file("missing.json"), ""); }).find("missing.json"),
            std::string::npos);
}

}  // namespace
}  // namespace autotrain
