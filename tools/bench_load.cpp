// bench_load MODEL [PASSES]: how fast Checkpoint::open hands out a model's tensors, and at what memory cost.
//
// For each pass: open the checkpoint, then (1) touch one byte per 4 KiB page of every tensor (the cost of
// mapping the weights in), (2) read every byte (xor of 8-byte words: the fair match for
// `cat shards > /dev/null`, which also reads every byte once), (3) sum every tensor in float with at::sum
// (a full read through ATen, bf16 -> f32 included). Prints one line per pass, then the RSS before
// opening (libtorch alone), the peak RSS, and the RSS split into file-backed pages (the mapped weights:
// page cache, shared, reclaimable, plus the shared libraries) and anonymous memory.
// tools/bench_load.sh builds a checkpoint and runs this next to `cat`.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "autotrain/error.h"
#include "autotrain/safetensors.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A field of /proc/self/status ("VmHWM", "RssFile", "RssAnon") in bytes; -1 when absent.
long long proc_status_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::atoll(line.c_str() + field.size() + 1) * 1024;
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR_OR_FILE [PASSES]\n", argv[0]);
    return 2;
  }
  const int passes = argc > 2 ? std::atoi(argv[2]) : 2;
  (void)at::zeros({1}).sum();  // libtorch's lazy initialisation belongs to the baseline, not to the load
  const long long baseline_rss = proc_status_bytes("VmRSS");
  try {
    for (int pass = 1; pass <= passes; ++pass) {
      auto start = std::chrono::steady_clock::now();
      autotrain::Checkpoint checkpoint = autotrain::Checkpoint::open(argv[1]);
      const double open_s = seconds_since(start);

      start = std::chrono::steady_clock::now();
      unsigned long long bytes = 0;
      unsigned touched = 0;
      for (const std::string& name : checkpoint.names()) {
        at::Tensor tensor = checkpoint.tensor(name);
        const auto* data = static_cast<const volatile unsigned char*>(tensor.data_ptr());
        const size_t size = tensor.numel() * tensor.element_size();
        for (size_t offset = 0; offset < size; offset += 4096) touched += data[offset];
        bytes += size;
      }
      const double touch_s = seconds_since(start);

      start = std::chrono::steady_clock::now();
      uint64_t xor_all = 0;
      for (const std::string& name : checkpoint.names()) {
        at::Tensor tensor = checkpoint.tensor(name);
        const auto* data = static_cast<const unsigned char*>(tensor.data_ptr());
        const size_t size = tensor.numel() * tensor.element_size();
        size_t i = 0;
        for (; i + 8 <= size; i += 8) {
          uint64_t word;
          std::memcpy(&word, data + i, 8);
          xor_all ^= word;
        }
        for (; i < size; ++i) xor_all ^= data[i];
      }
      const double read_s = seconds_since(start);

      start = std::chrono::steady_clock::now();
      double checksum = 0;
      for (const std::string& name : checkpoint.names())
        checksum += checkpoint.tensor(name).sum(at::kFloat).item<double>();
      const double sum_s = seconds_since(start);

      const double gb = bytes / 1e9;
      std::printf("pass %d: %zu tensors, %.3f GB | open %.4f s | touch pages %.3f s (%.2f GB/s) | "
                  "read all %.3f s (%.2f GB/s) | at::sum %.3f s (%.2f GB/s) | checksum %.6g (%u %llx)\n",
                  pass, checkpoint.names().size(), gb, open_s, touch_s, gb / touch_s, read_s, gb / read_s, sum_s,
                  gb / sum_s, checksum, touched & 1, static_cast<unsigned long long>(xor_all & 0xff));
      if (pass == passes) {
        rusage usage{};
        getrusage(RUSAGE_SELF, &usage);
        std::printf("weights_bytes %llu\nbaseline_rss_bytes %lld\npeak_rss_bytes %lld\nrss_file_bytes %lld\nrss_anon_bytes %lld\n", bytes, baseline_rss,
                    static_cast<long long>(usage.ru_maxrss) * 1024, proc_status_bytes("RssFile"),
                    proc_status_bytes("RssAnon"));
      }
    }
  } catch (const autotrain::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}
