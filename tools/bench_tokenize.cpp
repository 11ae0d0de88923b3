// bench_tokenize MODEL DATA_PATH THREADS: how fast `train` tokenizes a split into its token cache (data read, each
// text + eos encoded as AutoTrain's default trainer does, ids written), on THREADS of libtorch's threads. Prints the
// texts' tokens, the seconds and the peak RSS over the baseline. tools/bench_tokenize.sh runs it next to
// AutoTrain's own tokenization (datasets.map over a transformers fast tokenizer).
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/progress.h"
#include "autotrain/token_cache.h"
#include "autotrain/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s MODEL DATA_PATH THREADS\n", argv[0]);
    return 2;
  }
  at::set_num_threads(std::stoi(argv[3]));
  const int64_t baseline = autotrain::resident_memory_bytes();
  const std::string cache = (std::filesystem::temp_directory_path() / "autotrain-bench-tokenize").string();
  std::filesystem::remove_all(cache);
  try {
    autotrain::TrainingParams params;
    params.model = argv[1];
    params.data_path = argv[2];
    params.text_column = "text";
    const auto start = std::chrono::steady_clock::now();
    const auto tokenizer = autotrain::Tokenizer::load(params.model);
    const autotrain::TokenizedText tokens = autotrain::tokenize_split(params, *tokenizer, "train", cache);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("threads %d\ntokens %lld\nseconds %.3f\npeak_rss_over_baseline_bytes %lld\n", at::get_num_threads(),
                static_cast<long long>(tokens.size()), seconds,
                static_cast<long long>(usage.ru_maxrss) * 1024 - baseline);
  } catch (const autotrain::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::filesystem::remove_all(cache);
    return e.exit_code();
  }
  std::filesystem::remove_all(cache);
  return 0;
}
