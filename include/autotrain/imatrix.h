// Importance matrices (llama.cpp's llama-imatrix): for each weight W of a model, by its GGUF name
// ("blk.0.attn_q.weight"), the mean square of each of its input columns over a calibration text. llama-quantize
// --imatrix fits each block's scales to least error weighted by them (ggml_quantize with an importance), which
// matters most for the 2- and 3-bit types.
//
// Two file formats, both read (llama.cpp common/imatrix-loader.cpp; written by tools/imatrix/imatrix.cpp):
//   GGUF (llama-imatrix's default since mid-2025): general.type "imatrix", imatrix.datasets (strings),
//     imatrix.chunk_count, imatrix.chunk_size (u32); per weight W the F32 tensors "W.in_sum2" (columns, matrices):
//     the sums of squares, and "W.counts" (1, matrices): the activations summed (tokens); value = sum / count,
//     1 where the count is 0. An optional "W.in_sum" (sums) is not needed here.
//   legacy .dat (--output-format dat): int32 entry count; per entry int32 name length, the name, int32 ncall,
//     int32 value count, float32 values (mean square x ncall); value = stored / ncall (stored as is when ncall is 0);
//     then optionally int32 chunk count, int32 length and the dataset's name.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "autotrain/model.h"

namespace autotrain {

struct ImportanceMatrix {
  std::string path;
  std::map<std::string, std::vector<float>> values;  // weight's GGUF name -> one value a column (per expert)
  std::vector<std::string> datasets;                 // what it was computed on, as the file names it
  int64_t chunk_count = 0;                           // chunks of text it was computed on; 0: not recorded
};

// Reads either format (GGUF first, as llama.cpp does); throws Error naming the file for a truncated or malformed
// one, an entry without sums or counts, or a value that is not finite (llama-quantize refuses those too).
ImportanceMatrix load_imatrix(const std::string& path);

// llama-imatrix's collector as a CausalLM's ActivationObserver: for each weight the sums over every token of the
// squares of its input columns (in float64 on the model's device), and the tokens summed; q/k/v share their input,
// gate/up theirs. The LM head's input is output.weight's (token_embd.weight's when tied), as llama-imatrix
// --process-output records it.
class ImatrixCollector : public ActivationObserver {
 public:
  explicit ImatrixCollector(bool tied_embeddings) : tied_embeddings_(tied_embeddings) {}
  void observe(int64_t layer, const char* site, const at::Tensor& x) override;

  // Sums of squares (float64, CPU) and tokens, by GGUF weight name.
  std::map<std::string, std::pair<at::Tensor, int64_t>> sums() const;
  // Writes the matrix as llama-imatrix does, through a temporary name: its GGUF format, or the legacy one for a path
  // ending in .dat. dataset: what it was computed on; chunks of chunk_size tokens. Returns the weights written.
  int64_t save(const std::string& path, const std::string& dataset, int64_t chunks, int64_t chunk_size) const;

 private:
  bool tied_embeddings_;
  std::map<std::pair<int64_t, std::string>, std::pair<at::Tensor, int64_t>> sites_;  // (layer, site) -> sums, tokens
};

}  // namespace autotrain
