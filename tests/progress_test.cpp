#include <gtest/gtest.h>

#include "autotrain/progress.h"

namespace autotrain {

TEST(FormatDuration, PicksUnitsLikeAHumanWould) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(FormatCount, UsesSiSuffixesWithThreeDigits) {
  EXPECT_EQ(format_count(12), "12");
  EXPECT_EQ(format_count(12345), "12.3k");
  EXPECT_EQ(format_count(4560000), "4.56M");
  EXPECT_EQ(format_count(999999), "1.00M");
}

TEST(ProgressBar, ReportsDoneRateAndEta) {
  ProgressBar bar("load", 100, "tensors", /*log_interval_seconds=*/1e9);
  EXPECT_LT(bar.eta_seconds(), 0);  // nothing done yet: unknown
  bar.advance(50);
  EXPECT_EQ(bar.done(), 50);
  EXPECT_GT(bar.rate_per_second(), 0);
  EXPECT_GE(bar.eta_seconds(), 0);
  bar.set_status("loss 2.31");
  std::string line = bar.render_line();
  EXPECT_NE(line.find("50/100"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
  EXPECT_NE(line.find("loss 2.31"), std::string::npos) << line;
  EXPECT_NE(line.find("rss"), std::string::npos) << line;
}

TEST(ResidentMemory, IsPositiveOnLinux) { EXPECT_GT(resident_memory_bytes(), 0); }

}  // namespace autotrain
