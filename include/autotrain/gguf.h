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
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "autotrain/ggml_quants.h"

namespace autotrain {

// The file type: what the 2-D weights become (1-D tensors, norms and biases, stay f32). f32 / f16 / bf16 / q8_0
// are convert_hf_to_gguf.py's --outtype; the others are llama-quantize's presets, applied as it applies them to
// an f32 GGUF: its per-tensor mixture (output.weight q6_K; the *_K_M presets q6_K for some layers' attn_v and
// ffn_down; q2_K and q3_K_* more bits for attn_v, attn_output and ffn_down) and its fallbacks for rows that are not
// whole blocks.
// q2_K_S is llama-quantize's q2_K without its extra bits for attn_output and most of ffn_down, which wants an
// importance matrix (GgufOptions::imatrix_file), as llama-quantize does.
enum class GgufType {
  f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q2_K_S, q3_K_S, q3_K_M, q3_K_L, q4_K_S, q4_K_M, q5_K_S, q5_K_M,
  q6_K, iq4_nl, iq4_xs
};

struct GgufOptions {
  std::string model_dir, out_file;
  std::string adapter_dir;     // set: write this PEFT LoRA adapter of model_dir as llama.cpp's LoRA GGUF instead,
  bool merge_adapter = false;  // or, set too, the model with the adapter merged (as merge-adapter merges it)
  std::string name;  // general.name; empty: the folder's name
  GgufType type = GgufType::f16;
  // llama-quantize's --output-tensor-type, --token-embedding-type and --pure, with a preset: output.weight or
  // token_embd.weight in that type whatever the mixture says (bartowski's "_L" files: q8_0 for both), or every
  // 2-D weight in the preset's own type without the mixture.
  std::optional<GgmlType> output_type, token_embedding_type;
  bool pure = false;
  // llama-quantize's --imatrix: an importance matrix (include/autotrain/imatrix.h, either file format) that each
  // quantized weight's blocks are fitted with, as llama-quantize does; with a preset only. Its presence also changes
  // the mixture as llama-quantize's does (q4_0 / q5_0: the first eighth of ffn_down in q4_1 / q5_1).
  std::string imatrix_file;
};

struct GgufSummary {
  std::string architecture;  // general.architecture: "llama" (Llama, Mistral), "qwen2" or "qwen3"
  int64_t tensors = 0;
  int64_t metadata_entries = 0;
  uint64_t file_bytes = 0;
  std::map<std::string, int64_t> tensor_types;  // ggml type name -> tensors stored in it
};

// Writes options.out_file atomically, one tensor in memory at a time; throws Error naming the file or
// tensor it cannot convert.
GgufSummary export_gguf(const GgufOptions& options);

// "f16", "q4_K_M", ... (any case); throws a config error naming the accepted ones for another.
GgufType parse_gguf_type(const std::string& text);
std::string gguf_type_name(GgufType type);  // "q4_K_M"
// A ggml tensor type by name ("q8_0", "Q6_K", "f16", ...), for --output-tensor-type / --token-embedding-type; throws
// a config error naming the accepted ones for another.
GgmlType parse_ggml_type(const std::string& text);
std::vector<std::string> gguf_type_names();
uint32_t gguf_llama_ftype(GgufType type);        // general.file_type: llama.h's llama_ftype
bool is_llama_quantize_preset(GgufType type);    // q4_0 ... q6_K (not the converter's f32 / f16 / bf16 / q8_0)

// (src/gguf_types.cpp) The ggml type llama.cpp's converter (f32/f16/bf16/q8_0) or llama-quantize (the rest) gives a 2-D weight of the
// GGUF name `name` with rows of `columns` values (llama-quant.cpp llama_tensor_get_type). The mixture depends on
// the tensor's place among its kind in llama-quantize's (lexicographic) order, so it takes all the weights' names.
struct GgufMixture {
  GgufType type = GgufType::f16;
  int64_t layers = 0;              // block_count
  bool tied_embeddings = false;    // no output.weight: token_embd is the output too
  bool seventy_b = false;          // llama.cpp's LLM_TYPE_70B (80 layers), which gives attn_v more bits
  int64_t gqa = 1;                 // query heads per kv head (llama.cpp's n_gqa: q2_K's attn_v gets q4_K from 4)
  std::optional<GgmlType> output_type, token_embedding_type;  // GgufOptions's
  bool pure = false;
  bool has_imatrix = false;        // an importance matrix is given (llama-quantize's qs.has_imatrix)
  std::vector<std::string> names;  // every 2-D weight's GGUF name
};
GgmlType gguf_weight_type(const GgufMixture& mixture, const std::string& name, int64_t columns);

// The type export-gguf gives each 2-D weight (by GGUF name) of a checkpoint holding `sources` (HF name, shape) with
// model_dir's config.json, as options (type and overrides) say: the mixture as the export derives it (layers, tied embeddings, query heads per kv
// head, llama.cpp's 70B rule), without the weights themselves (tests take real models' shapes).
using TensorShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;  // (name, shape), in file order
std::map<std::string, GgmlType> gguf_weight_types(const std::string& model_dir, const TensorShapes& sources,
                                                  const GgufOptions& options);

// The weights of a model folder as a GGUF file of `type` stores them (export-gguf's per-tensor types, each 2-D weight
// quantized and dequantized by ggml_quants, as llama.cpp dequantizes it; 1-D tensors unchanged), as a
// ModelOptions::weight_transform: eval --gguf-type scores what llama.cpp would run. The q/k row order of llama is
// left as HF's: blocks run along rows, so the permutation does not change a row's values. With imatrix_file, each
// weight quantized with its importance as export-gguf --imatrix does.
std::function<at::Tensor(const std::string& name, const at::Tensor& tensor)> gguf_round_trip(
    const std::string& model_dir, GgufType type, const std::string& imatrix_file = "");

// A GGUF file of float32 tensors (name, tensor in torch order: outermost dimension first) and string, string-list and
// u32 metadata in the order given, written through a temporary name (autotrain imatrix's file).
struct GgufKeyValue {
  std::string key;
  std::variant<uint32_t, std::string, std::vector<std::string>> value;
};
void write_gguf_f32(const std::string& path, const std::vector<GgufKeyValue>& metadata,
                    const std::vector<std::pair<std::string, at::Tensor>>& tensors);

// The row order llama.cpp wants for q_proj / k_proj of Llama (convert_hf_to_gguf.py LlamaModel.permute):
// within each head, rows move from HF's rotate-half layout (first halves, then second halves) to
// interleaved pairs. weight (heads * head_dim, ...) -> same shape.
at::Tensor permute_for_llama_rope(const at::Tensor& weight, int64_t heads);

}  // namespace autotrain
