// Learning rates against transformers' get_scheduler() (fixture written by tests/reference/schedules.py).
#include <gtest/gtest.h>

#include <cmath>

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

// Rates compared exactly: both sides multiply the same doubles by 0.1 in the same order.
TEST(LearningRateSchedule, ReduceOnPlateauFollowsTorchAfterEveryEvaluation) {
  auto cases =
      nlohmann::json::parse(read_file(std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/schedules/plateau.json"));
  ASSERT_EQ(cases.size(), 6u);
  int64_t cuts = 0;
  for (const auto& c : cases) {
    const double lr = c["lr"];
    LearningRateSchedule schedule("reduce_lr_on_plateau", lr, 100, 0.1);
    EXPECT_EQ(schedule.warmup_steps(), 0);  // transformers gives this schedule no warmup
    EXPECT_EQ(schedule.lr_at(0), lr);
    const auto& losses = c["eval_losses"];
    for (size_t i = 0; i < losses.size(); ++i) {
      const double before = schedule.lr_at(0);
      const bool changed = schedule.after_evaluation(losses[i].is_null() ? std::nan("") : losses[i].get<double>());
      ASSERT_EQ(schedule.lr_at(static_cast<int64_t>(i)), c["rates"][i].get<double>()) << "lr " << lr << " eval " << i;
      EXPECT_EQ(changed, schedule.lr_at(0) != before);
      cuts += changed;
    }
    // A checkpoint's copy of the position continues the same way.
    LearningRateSchedule resumed("reduce_lr_on_plateau", lr, 100, 0.1);
    resumed.restore(*schedule.plateau());
    EXPECT_EQ(resumed.lr_at(0), schedule.lr_at(0));
  }
  EXPECT_EQ(cuts, 13);  // torch cut the fixture's rates 3 + 0 + 2 + 2 + 5 + 1 times
}

TEST(LearningRateSchedule, OnlyReduceOnPlateauTakesEvaluations) {
  LearningRateSchedule cosine("cosine", 1e-3, 10, 0.1);
  EXPECT_FALSE(cosine.reduces_on_plateau());
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(cosine.after_evaluation(1.0));
  EXPECT_EQ(cosine.lr_at(1), 1e-3);
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
