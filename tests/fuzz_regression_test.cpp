// Replays every fuzz input kept in the repository — the seed corpus and each input that once crashed a
// target (tests/fuzz/regressions/<target>/) — through the targets built without libFuzzer: none may let
// anything but autotrain::Error escape.
#include <gtest/gtest.h>

#include <filesystem>

#include "autotrain/fileio.h"
#include "fuzz/fuzz_targets.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
const fs::path kFuzzDir = fs::path(AUTOTRAIN_SOURCE_DIR) / "tests" / "fuzz";

TEST(FuzzRegression, EveryKeptInputIsAnsweredWithoutACrash) {
  int64_t replayed = 0;
  for (const fuzz::Target& target : fuzz::targets()) {
    int64_t seeds = 0;
    for (const char* kind : {"corpus", "regressions"}) {
      const fs::path folder = kFuzzDir / kind / target.name;
      if (!fs::exists(folder)) continue;
      for (const auto& entry : fs::directory_iterator(folder)) {
        if (!entry.is_regular_file() || entry.path().filename().string().front() == '.') continue;
        const std::string bytes = read_file(entry.path().string());
        SCOPED_TRACE(entry.path().string());
        EXPECT_NO_THROW(EXPECT_EQ(target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0));
        ++replayed;
        seeds += std::string(kind) == "corpus";
      }
    }
    EXPECT_GT(seeds, 0) << target.name << " has no seed corpus";
  }
  EXPECT_GT(replayed, 4);
}

}  // namespace
}  // namespace autotrain
