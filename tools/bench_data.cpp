// bench_data DATA_PATH SPLIT COLUMN [COLUMN ...]: how fast data.h reads a split's records (the files
// resolve_split_files finds; Parquet pages decompressed and decoded, JSONL parsed), and at what memory cost.
// Prints the records, the bytes of the cells' text (strings; conversations as their JSON), the seconds and the
// peak RSS over the baseline. tools/bench_data.sh writes a dataset and runs this next to pyarrow and datasets.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/progress.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s DATA_PATH SPLIT COLUMN [COLUMN ...]\n", argv[0]);
    return 2;
  }
  std::vector<autotrain::DataColumn> columns;
  for (int i = 3; i < argc; ++i) columns.push_back({argv[i], argv[i]});
  const int64_t baseline = autotrain::resident_memory_bytes();
  try {
    const auto start = std::chrono::steady_clock::now();
    const autotrain::DataFiles files = autotrain::resolve_split_files(argv[1], argv[2]);
    long long bytes = 0;
    const int64_t records = autotrain::for_each_record_cells(
        files, columns, [&](const autotrain::CellRow& cells, const std::string&) {
          for (const auto& cell : cells)
            bytes += static_cast<long long>(cell.is_string() ? cell.get_ref<const std::string&>().size()
                                                             : cell.dump().size());
        });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::printf("files %zu\nrecords %lld\ntext_bytes %lld\nseconds %.3f\npeak_rss_over_baseline_bytes %lld\n",
                files.size(), static_cast<long long>(records), bytes, seconds,
                static_cast<long long>(usage.ru_maxrss) * 1024 - baseline);
  } catch (const autotrain::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
