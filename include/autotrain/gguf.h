// GGUF export for llama.cpp / ollama: a Hugging Face Llama / Mistral / Qwen2 folder (a merged model, say)
// written as one GGUF v3 file with the metadata, vocabulary and tensor names llama.cpp's loader expects,
// as llama.cpp's convert_hf_to_gguf.py writes them.
//
// Format (ggml docs/gguf.md; the oracle is the `gguf` PyPI package's GGUFReader): little-endian "GGUF",
// version 3, tensor count (u64), metadata count (u64), the key/values, the tensor infos (name, dims
// innermost first, ggml type, offset into the data section), padding to general.alignment (32), then
// each tensor's data, itself padded to the alignment.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace autotrain {

enum class GgufType { f16, q8_0 };  // what 2-D weights become; 1-D tensors (norms, biases) stay f32

struct GgufOptions {
  std::string model_dir, out_file;
  std::string name;  // general.name; empty: the folder's name
  GgufType type = GgufType::f16;
};

struct GgufSummary {
  std::string architecture;  // general.architecture: "llama" (Llama, Mistral), "qwen2" or "qwen3"
  int64_t tensors = 0;
  int64_t metadata_entries = 0;
  uint64_t file_bytes = 0;
};

// Writes options.out_file atomically, one tensor in memory at a time; throws Error naming the file or
// tensor it cannot convert.
GgufSummary export_gguf(const GgufOptions& options);

// "f16" / "q8_0"; throws a config error for another.
GgufType parse_gguf_type(const std::string& text);

// llama.cpp's Q8_0 (ggml-quants.c quantize_row_q8_0_ref): blocks of 32 values along the last dimension,
// each stored as an fp16 scale d = absmax / 127 and 32 int8 round(x / d) (half away from zero).
// x is float32 with a last dimension divisible by 32; returns uint8 (numel / 32 * 34 bytes).
at::Tensor quantize_q8_0(const at::Tensor& x);
at::Tensor dequantize_q8_0(const at::Tensor& blocks, at::IntArrayRef shape);  // the inverse, float32

// The row order llama.cpp wants for q_proj / k_proj of Llama (convert_hf_to_gguf.py LlamaModel.permute):
// within each head, rows move from HF's rotate-half layout (first halves, then second halves) to
// interleaved pairs. weight (heads * head_dim, ...) -> same shape.
at::Tensor permute_for_llama_rope(const at::Tensor& weight, int64_t heads);

}  // namespace autotrain
