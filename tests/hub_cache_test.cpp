// Models named by their Hub id, read from the local Hugging Face cache, against huggingface_hub itself
// (tests/reference/hub_cache.py): the snapshot try_to_load_from_cache finds, the cache folder constants.py
// derives from the environment, the ids validate_repo_id accepts; then train / generate / eval / merge-adapter /
// export-gguf with "Qwen/..."-style ids through the binary.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/hub_cache.h"
#include "test_util.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::quote;

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;
const std::string kReference = kFixtures + "/reference/hub_cache";
const std::string kCache = kReference + "/cache";
const std::string kRepo = "autotrain-fixtures/tiny-qwen3";

json expected() { return json::parse(read_file(kReference + "/expected.json")); }

TEST(HubCache, SnapshotIsTheOneHuggingfaceHubFinds) {
  const json snapshots = expected()["snapshots"];
  ASSERT_EQ(snapshots.size(), 4u);
  for (const auto& [repo_id, folder] : snapshots.items()) {
    SCOPED_TRACE(repo_id);
    const std::optional<std::string> ours = cached_hub_snapshot(repo_id, kCache);
    if (folder.is_null()) {
      EXPECT_FALSE(ours.has_value()) << *ours;
    } else {
      ASSERT_TRUE(ours.has_value());
      EXPECT_TRUE(fs::equivalent(*ours, kCache + "/" + folder.get<std::string>())) << *ours;
    }
  }
}

TEST(HubCache, CacheFolderFollowsTheVariablesAsHuggingfaceHubDoes) {
  const json want = expected();  // a named copy: iterating expected()["cache_dirs"] would read a destroyed temporary
  for (const json& row : want["cache_dirs"]) {
    SCOPED_TRACE(row[0].dump());
    testing::CacheEnvironment scope(row[0].get<std::map<std::string, std::string>>());
    EXPECT_EQ(hub_cache_dir(), row[1].get<std::string>());
  }
}

TEST(HubCache, RepoIdsAreTheOnesValidateRepoIdAccepts) {
  const json ids = expected()["repo_ids"];
  ASSERT_GT(ids.size(), 20u);
  for (const auto& [name, valid] : ids.items()) EXPECT_EQ(is_hub_repo_id(name), valid.get<bool>()) << name;
}

TEST(HubCache, AFolderComesFirstAndAMissingIdSaysHowToFetchIt) {
  testing::CacheEnvironment scope({{"HF_HUB_CACHE", kCache}});
  EXPECT_EQ(resolve_model_folder(kFixtures + "/models/qwen3"), kFixtures + "/models/qwen3");
  EXPECT_TRUE(
      fs::equivalent(resolve_model_folder(kRepo), kCache + "/" + expected()["snapshots"][kRepo].get<std::string>()));
  const std::string missing = testing::error_message_of([] { resolve_model_folder("autotrain-fixtures/absent"); });
  EXPECT_NE(missing.find("hf download autotrain-fixtures/absent"), std::string::npos) << missing;
  EXPECT_NE(missing.find(kCache), std::string::npos) << missing;
  const std::string not_an_id = testing::error_message_of([] { resolve_model_folder("./no/such/folder"); });
  EXPECT_NE(not_an_id.find("./no/such/folder: no such folder"), std::string::npos) << not_an_id;
  const std::string file = testing::error_message_of([] { resolve_model_folder(kCache + "/../expected.json"); });
  EXPECT_NE(file.find("not a folder"), std::string::npos) << file;
}

// The whole path a user takes with an AutoTrain config naming a Hub id: train, then eval, generate and
// merge-adapter by the same id; what is written records the id, as PEFT and AutoTrain record it.
TEST(HubCache, TrainGenerateEvalAndMergeByHubId) {
  testing::TempDir dir;
  const json config = {{"model", kRepo}, {"project_name", "run"}, {"data_path", std::string(AUTOTRAIN_SOURCE_DIR) +
                                                                                  "/configs/example/data"},
                       {"block_size", 32}, {"epochs", 1}, {"batch_size", 4}, {"gradient_accumulation", 1},
                       {"lr", 0.003}, {"quantization", "none"}, {"target_modules", "q_proj, v_proj"},
                       {"peft", true}, {"lora_r", 4}, {"lora_alpha", 8}, {"valid_split", nullptr}};
  testing::write_text(dir.file("params.json"), config.dump(2));
  const std::string env = "HF_HUB_CACHE=" + quote(kCache) + " ";
  const std::string binary = quote(AUTOTRAIN_BINARY);
  auto run = [&](const std::string& arguments) {
    return testing::run_command("cd " + quote(dir.path().string()) + " && " + env + binary + " " + arguments);
  };
  auto trained = run("train --config params.json --cache-dir cache --device cpu");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_NE(trained.output.find(kRepo + ": the Hugging Face cache's snapshot 5e8a1b4c"), std::string::npos)
      << trained.output;
  EXPECT_EQ(json::parse(read_file(dir.file("run/adapter_config.json")))["base_model_name_or_path"], kRepo);
  EXPECT_EQ(json::parse(read_file(dir.file("run/training_params.json")))["model"], kRepo);

  auto generated = run("generate --model " + kRepo + " --adapter run --prompt Hello --max-new-tokens 4");
  EXPECT_EQ(generated.exit_code, 0) << generated.output;
  auto evaluated = run("eval --config params.json --split train --adapter run --cache-dir cache --device cpu");
  EXPECT_EQ(evaluated.exit_code, 0) << evaluated.output;
  auto merged = run("merge-adapter --base " + kRepo + " --adapter run --out merged");
  ASSERT_EQ(merged.exit_code, 0) << merged.output;
  EXPECT_EQ(json::parse(read_file(dir.file("merged/config.json")))["model_type"], "qwen3");  // not the older qwen2
  auto exported = run("export-gguf --model " + kRepo + " --out tiny.gguf");
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(read_file(dir.file("tiny.gguf")).find("tiny-qwen3"), std::string::npos);  // general.name: not the commit

  // Without the cache (another HF_HUB_CACHE): one line saying how to fetch the model.
  auto missing = testing::run_command("cd " + quote(dir.path().string()) + " && HF_HUB_CACHE=" +
                                      quote(dir.file("empty-cache")) + " " + binary +
                                      " train --config params.json --cache-dir cache --device cpu");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("hf download " + kRepo), std::string::npos) << missing.output;
}

}  // namespace
}  // namespace autotrain
