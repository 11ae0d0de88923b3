// The CLI: usage for every subcommand, exit codes 0 / 1 / 2.
#include <gtest/gtest.h>

#include "test_util.h"

namespace autotrain {
namespace {

using testing::run_autotrain;

TEST(Cli, HelpShowsEverySubcommand) {
  auto result = run_autotrain("--help");
  EXPECT_EQ(result.exit_code, 0);
  for (const char* word : {"Usage", "train", "merge-adapter", "estimate-cost", "--log-level", "--version"})
    EXPECT_NE(result.output.find(word), std::string::npos) << word << "\n" << result.output;
}

TEST(Cli, EverySubcommandHasUsage) {
  const std::pair<const char*, const char*> expected[] = {
      {"train", "--config"},           {"merge-adapter", "--adapter"},  {"estimate-cost", "--gpu"},
      {"generate", "--max-new-tokens"}, {"export-gguf", "--type"}};
  for (const auto& [command, option] : expected) {
    auto result = run_autotrain(std::string(command) + " --help");
    EXPECT_EQ(result.exit_code, 0) << command;
    EXPECT_NE(result.output.find("Usage"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(option), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("Example"), std::string::npos) << result.output;
  }
}

TEST(Cli, VersionNamesLibtorch) {
  auto result = run_autotrain("--version");
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_NE(result.output.find("autotrain " AUTOTRAIN_VERSION), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("libtorch"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("CUDA kernels"), std::string::npos) << result.output;
}

TEST(Cli, UsageErrorsExitWith2) {
  EXPECT_EQ(run_autotrain("train").exit_code, 2);  // --config is required
  EXPECT_EQ(run_autotrain("no-such-command").exit_code, 2);
  EXPECT_EQ(run_autotrain("train --config x.json --no-such-flag").exit_code, 2);
  EXPECT_EQ(run_autotrain("").exit_code, 2);  // no subcommand
  auto bad_level = run_autotrain("--log-level loud --version");
  EXPECT_EQ(bad_level.exit_code, 2);
  EXPECT_NE(bad_level.output.find("--log-level loud"), std::string::npos) << bad_level.output;
}

}  // namespace
}  // namespace autotrain
