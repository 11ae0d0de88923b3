// llama-imatrix's collector and writer (the reader: imatrix_file.cpp).
#include "autotrain/imatrix.h"

#include <ATen/ATen.h>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/gguf.h"

namespace autotrain {

void ImatrixCollector::observe(int64_t layer, const char* site, const at::Tensor& x) {
  const int64_t columns = x.size(-1), tokens = x.numel() / columns;
  const at::Tensor squares = at::sum(x.reshape({tokens, columns}).to(at::kFloat).square(), {0}, false, at::kDouble);
  auto& [sums, count] = sites_[{layer, site}];
  sums = sums.defined() ? sums.add_(squares) : squares;
  count += tokens;
}

std::map<std::string, std::pair<at::Tensor, int64_t>> ImatrixCollector::sums() const {
  std::map<std::string, std::pair<at::Tensor, int64_t>> out;
  for (const auto& [key, entry] : sites_) {
    const auto& [layer, site] = key;
    const std::pair<at::Tensor, int64_t> value{entry.first.cpu(), entry.second};
    const std::string block = "blk." + std::to_string(layer) + ".";
    if (site == "attn_qkv") {
      for (const char* weight : {"attn_q", "attn_k", "attn_v"}) out[block + weight + ".weight"] = value;
    } else if (site == "ffn_gate_up") {
      for (const char* weight : {"ffn_gate", "ffn_up"}) out[block + weight + ".weight"] = value;
    } else if (site == "lm_head") {
      out[tied_embeddings_ ? "token_embd.weight" : "output.weight"] = value;
    } else {
      out[block + site + ".weight"] = value;
    }
  }
  return out;
}

int64_t ImatrixCollector::save(const std::string& path, const std::string& dataset, int64_t chunks,
                               int64_t chunk_size) const {
  const auto entries = sums();
  if (entries.empty()) throw Error(path + ": no activations were seen; nothing to write (a bug)");
  const bool legacy = path.size() >= 4 && path.compare(path.size() - 4, 4, ".dat") == 0;
  if (!legacy) {  // llama-imatrix's save_imatrix: W.in_sum2 (columns, 1 matrix) and W.counts (1, 1), sorted by name
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (const auto& [name, entry] : entries) {
      tensors.emplace_back(name + ".in_sum2", entry.first.to(at::kFloat).reshape({1, -1}));
      tensors.emplace_back(name + ".counts", at::full({1, 1}, double(entry.second), at::kFloat));
    }
    write_gguf_f32(path,
                   {{"general.type", std::string("imatrix")},
                    {"imatrix.datasets", std::vector<std::string>{dataset}},
                    {"imatrix.chunk_count", uint32_t(chunks)},
                    {"imatrix.chunk_size", uint32_t(chunk_size)}},
                   tensors);
    return int64_t(entries.size());
  }
  // save_imatrix_legacy: per entry the mean square times ncall, the calls rounded up from tokens / chunk_size.
  std::string bytes;
  auto raw = [&bytes](auto value) { bytes.append(reinterpret_cast<const char*>(&value), sizeof value); };
  raw(int32_t(entries.size()));
  for (const auto& [name, entry] : entries) {
    raw(int32_t(name.size()));
    bytes += name;
    const int64_t tokens = entry.second;
    const int32_t ncall = int32_t((tokens + chunk_size - 1) / chunk_size);
    raw(ncall);
    raw(int32_t(entry.first.numel()));
    const at::Tensor sums = entry.first.to(at::kFloat).contiguous();
    const float* values = sums.data_ptr<float>();
    for (int64_t i = 0; i < sums.numel(); ++i) raw(values[i] / float(tokens) * float(ncall));
  }
  raw(int32_t(chunks));
  raw(int32_t(dataset.size()));
  bytes += dataset;
  write_file_atomic(path, bytes);
  return int64_t(entries.size());
}

}  // namespace autotrain
