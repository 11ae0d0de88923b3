#include <gtest/gtest.h>

#include "autotrain/error.h"
#include "autotrain/metrics.h"
#include "test_util.h"

namespace autotrain {
namespace {

TEST(MetricsWriter, WritesOneJsonObjectPerLineAndAppends) {
  testing::TempDir dir;
  const std::string path = dir.file("run/metrics.jsonl");  // the folder is created
  {
    MetricsWriter writer(path);
    writer.write({{"step", 1}, {"loss", 2.5}});
    writer.write({{"step", 2}, {"loss", 2.25}, {"time", 7.0}});
  }
  {
    MetricsWriter resumed(path);  // a resumed run continues the same file
    resumed.write({{"step", 3}, {"loss", 2.0}});
  }
  auto records = read_metrics(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0]["step"], 1);
  EXPECT_DOUBLE_EQ(records[1]["loss"].get<double>(), 2.25);
  EXPECT_DOUBLE_EQ(records[1]["time"].get<double>(), 7.0);  // kept when given
  EXPECT_GT(records[2]["time"].get<double>(), 1.7e9);       // added when missing: Unix time
}

TEST(MetricsWriter, BadLineIsNamed) {
  testing::TempDir dir;
  testing::write_text(dir.file("m.jsonl"), "{\"step\": 1}\n{broken\n");
  try {
    read_metrics(dir.file("m.jsonl"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(MetricsWriter, UnwritableFolderIsAClearError) {
  EXPECT_THROW(MetricsWriter("/proc/autotrain-cannot-write/metrics.jsonl"), Error);
}

TEST(MetricsWriter, AResumeDropsHalfALineLeftByAFullDisk) {
  testing::TempDir dir;
  testing::write_text(dir.file("m.jsonl"), "{\"step\": 1}\n{\"step\": 2}\n{\"step\": 3, \"lo");
  keep_metrics_through_step(dir.file("m.jsonl"), 5);
  auto records = read_metrics(dir.file("m.jsonl"));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1]["step"], 2);
  // Broken JSON elsewhere than a torn last line is not guessed at.
  testing::write_text(dir.file("n.jsonl"), "{broken\n{\"step\": 2}\n");
  EXPECT_NE(testing::error_message_of([&] { keep_metrics_through_step(dir.file("n.jsonl"), 5); }).find("line 1"),
            std::string::npos);
}

TEST(MetricsWriter, AFullDiskIsAnErrorNamingTheFile) {
  // /dev/full accepts the open and fails every write with ENOSPC.
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  MetricsWriter writer("/dev/full");
  const std::string message = testing::error_message_of([&] { writer.write({{"step", 1}, {"pad", std::string(1 << 16, 'x')}}); });
  EXPECT_NE(message.find("/dev/full: writing metrics failed (No space left on device)"), std::string::npos) << message;
}

}  // namespace
}  // namespace autotrain
