// The fuzz targets: each takes arbitrary bytes, feeds them to one loader the way a user's file would
// reach it, and returns 0. An autotrain::Error is the expected answer to bad bytes; anything else that
// escapes (another exception, a crash, a sanitizer report, a hang) is a bug. tools/fuzz.sh runs them
// under libFuzzer; the FuzzRegression test replays the seed corpus and every crash found so far.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace autotrain::fuzz {

int safetensors_header(const uint8_t* data, size_t size);  // a .safetensors file
int training_params(const uint8_t* data, size_t size);     // a training_params.json
int tokenizer_json(const uint8_t* data, size_t size);      // a tokenizer.json, then encode/decode
int dataset(const uint8_t* data, size_t size);             // the first byte picks .jsonl/.json/.csv/.txt/
                                                           // .parquet/.jsonl.gz/.csv.zst/.arrow
int chat_template(const uint8_t* data, size_t size);       // a Jinja chat template, then after a NUL byte a
                                                           // conversation cell (Python / JSON list literal)
int dataset_card(const uint8_t* data, size_t size);        // a README.md dataset card, then after a NUL byte
                                                           // the split ("train", "CONFIG:SPLIT"), resolved
int imatrix(const uint8_t* data, size_t size);             // an importance matrix (GGUF or legacy .dat)

struct Target {
  std::string name;
  int (*run)(const uint8_t*, size_t);
};
const std::vector<Target>& targets();

}  // namespace autotrain::fuzz
