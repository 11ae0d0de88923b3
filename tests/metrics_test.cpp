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

}  // namespace
}  // namespace autotrain
