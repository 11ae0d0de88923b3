// Learning rates against transformers' get_scheduler() (fixture written by tests/reference/schedules.py).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/scheduler.h"

namespace autotrain {
namespace {

TEST(LearningRateSchedule, EqualsTransformersAtEveryStep) {
  auto cases = nlohmann::json::parse(read_file(std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/schedules/lr.json"));
  ASSERT_GE(cases.size(), 100u);
  size_t compared = 0;
  for (const auto& c : cases) {
    LearningRateSchedule schedule(c["scheduler"], c["lr"], c["total_steps"], c["warmup_ratio"]);
    ASSERT_EQ(schedule.warmup_steps(), c["warmup_steps"].get<int64_t>()) << c["scheduler"] << " " << c["total_steps"];
    const auto& rates = c["rates"];
    for (size_t step = 0; step < rates.size(); ++step) {
      // Both sides compute the same double formula; 1e-15 relative leaves room for libm's last bit only.
      double expected = rates[step].get<double>();
      ASSERT_NEAR(schedule.lr_at(static_cast<int64_t>(step)), expected, 1e-15 * std::max(1.0, expected) + 1e-19)
          << c["scheduler"] << " total=" << c["total_steps"] << " warmup_ratio=" << c["warmup_ratio"] << " step=" << step;
      ++compared;
    }
  }
  EXPECT_GT(compared, 10000u);
}

TEST(LearningRateSchedule, UnknownNameIsAConfigError) {
  try {
    LearningRateSchedule("triangle", 1e-4, 10, 0.1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), kExitUsage);
  }
}

}  // namespace
}  // namespace autotrain
