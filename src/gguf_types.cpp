// The GGUF file types of export-gguf and the ggml type each 2-D weight gets: the converter's --outtype, or
// llama-quantize's per-tensor mixture for its presets (llama.cpp src/llama-quant.cpp).
#include <algorithm>

#include "autotrain/error.h"
#include "autotrain/gguf.h"
#include "autotrain/text_util.h"

namespace autotrain {

namespace {

// Each file type: its name, llama.cpp's llama_ftype (general.file_type) and the type of its 2-D weights before
// llama-quantize's mixture. The first four are the converter's --outtype, the rest llama-quantize's presets.
struct GgufTypeRow {
  GgufType type;
  const char* name;
  uint32_t llama_ftype;
  GgmlType weights;
  bool preset;
};
const GgufTypeRow kGgufTypes[] = {
    {GgufType::f32, "f32", 0, GgmlType::f32, false},        {GgufType::f16, "f16", 1, GgmlType::f16, false},
    {GgufType::bf16, "bf16", 32, GgmlType::bf16, false},    {GgufType::q8_0, "q8_0", 7, GgmlType::q8_0, false},
    {GgufType::q4_0, "q4_0", 2, GgmlType::q4_0, true},      {GgufType::q4_1, "q4_1", 3, GgmlType::q4_1, true},
    {GgufType::q5_0, "q5_0", 8, GgmlType::q5_0, true},      {GgufType::q5_1, "q5_1", 9, GgmlType::q5_1, true},
    {GgufType::q2_K, "q2_K", 10, GgmlType::q2_K, true},     {GgufType::q2_K_S, "q2_K_S", 21, GgmlType::q2_K, true},
    {GgufType::q3_K_S, "q3_K_S", 11, GgmlType::q3_K, true},
    {GgufType::q3_K_M, "q3_K_M", 12, GgmlType::q3_K, true}, {GgufType::q3_K_L, "q3_K_L", 13, GgmlType::q3_K, true},
    {GgufType::q4_K_S, "q4_K_S", 14, GgmlType::q4_K, true}, {GgufType::q4_K_M, "q4_K_M", 15, GgmlType::q4_K, true},
    {GgufType::q5_K_S, "q5_K_S", 16, GgmlType::q5_K, true}, {GgufType::q5_K_M, "q5_K_M", 17, GgmlType::q5_K, true},
    {GgufType::q6_K, "q6_K", 18, GgmlType::q6_K, true},     {GgufType::iq4_nl, "iq4_nl", 25, GgmlType::iq4_nl, true},
    {GgufType::iq4_xs, "iq4_xs", 30, GgmlType::iq4_xs, true}};

const GgufTypeRow& type_row(GgufType type) {
  for (const GgufTypeRow& row : kGgufTypes) {
    if (row.type == type) return row;
  }
  throw Error("unknown GGUF type (a bug)");
}

// Where `name` stands among the weights whose names contain `kind`, in the name order llama-quantize walks them
// (a std::map's: "blk.10." before "blk.2."), and how many there are.
std::pair<int64_t, int64_t> rank_among(const std::vector<std::string>& names, const std::string& name,
                                       const std::string& kind) {
  std::vector<std::string> same;
  for (const std::string& other : names) {
    if (other.find(kind) != std::string::npos) same.push_back(other);
  }
  std::sort(same.begin(), same.end());
  return {std::find(same.begin(), same.end(), name) - same.begin(), int64_t(same.size())};
}

// llama-quant.cpp llama_tensor_get_type_impl for these presets and a dense (not mixture-of-experts, not Falcon)
// model.
GgmlType llama_quantize_choice(const GgufMixture& mixture, const std::string& name, int64_t columns) {
  const GgufType preset = mixture.type;
  const GgmlType base = type_row(preset).weights;
  if (name == "output.weight" || (mixture.tied_embeddings && name == "token_embd.weight")) {
    if (mixture.output_type) return *mixture.output_type;
    if (columns % ggml_type_info(base).block_values != 0) return GgmlType::q8_0;
    return base == GgmlType::q8_0 ? GgmlType::q8_0 : GgmlType::q6_K;
  }
  if (name == "token_embd.weight") return base;
  auto more_bits = [](int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; };
  const bool k_m = preset == GgufType::q4_K_M || preset == GgufType::q5_K_M;
  const bool iq4 = preset == GgufType::iq4_nl || preset == GgufType::iq4_xs;
  if (name.find("attn_v.weight") != std::string::npos) {
    const auto [i, n] = rank_among(mixture.names, name, "attn_v.weight");
    GgmlType type = base;
    if (preset == GgufType::q2_K) {  // 4+ query heads a kv head: attn_v is that much smaller than attn_q
      type = mixture.gqa >= 4 ? GgmlType::q4_K : GgmlType::q3_K;
    } else if (preset == GgufType::q2_K_S && mixture.gqa >= 4) {
      type = GgmlType::q4_K;
    } else if (preset == GgufType::q3_K_M) {
      type = i < 2 ? GgmlType::q5_K : GgmlType::q4_K;
    } else if (preset == GgufType::q3_K_L) {
      type = GgmlType::q5_K;
    } else if (k_m && more_bits(i, n)) {
      type = GgmlType::q6_K;
    } else if (preset == GgufType::q4_K_S && i < 4) {
      type = GgmlType::q5_K;
    } else if (iq4 && mixture.gqa >= 4) {
      type = GgmlType::q5_K;
    }
    // A 70B's attn_v is 8x smaller than its attn_q (8 heads share it): more bits cost little there.
    if (mixture.seventy_b && (type == GgmlType::q3_K || type == GgmlType::q4_K)) type = GgmlType::q5_K;
    return type;
  }
  if (name.find("ffn_down") != std::string::npos) {
    const int64_t i = rank_among(mixture.names, name, "ffn_down").first, n = mixture.layers;
    if (preset == GgufType::q2_K) return GgmlType::q3_K;
    if (preset == GgufType::q2_K_S) return i < n / 8 ? GgmlType::q4_K : base;
    if (preset == GgufType::q3_K_M) return i < n / 16 ? GgmlType::q5_K : GgmlType::q4_K;
    if (preset == GgufType::q3_K_L) return GgmlType::q5_K;
    if (k_m && more_bits(i, n)) return GgmlType::q6_K;
    if (iq4 && i < n / 8 && !mixture.has_imatrix) return GgmlType::q5_K;
    if (preset == GgufType::q4_K_S && i < n / 8) return GgmlType::q5_K;
    // With an importance matrix only (so that the file without one stays as it was): the first ffn_down of q4_0 /
    // q5_0 can still go astray, q4_1 / q5_1 do not.
    if (mixture.has_imatrix && i < n / 8 && (preset == GgufType::q4_0 || preset == GgufType::q5_0))
      return preset == GgufType::q4_0 ? GgmlType::q4_1 : GgmlType::q5_1;
  }
  if (name.find("attn_output.weight") != std::string::npos) {
    if (preset == GgufType::q2_K) return GgmlType::q3_K;
    if (preset == GgufType::q3_K_M) return GgmlType::q4_K;
    if (preset == GgufType::q3_K_L) return GgmlType::q5_K;
  }
  return base;
}

}  // namespace

GgufType parse_gguf_type(const std::string& text) {
  for (const GgufTypeRow& row : kGgufTypes) {
    if (ascii_lower(text) == ascii_lower(row.name)) return row.type;
  }
  std::string names;
  for (const std::string& name : gguf_type_names()) names += (names.empty() ? "" : ", ") + name;
  throw config_error("GGUF type \"" + text + "\" is not one of " + names);
}

std::string gguf_type_name(GgufType type) { return type_row(type).name; }

GgmlType parse_ggml_type(const std::string& text) {
  std::string names;
  for (GgmlType type : {GgmlType::f32, GgmlType::f16, GgmlType::bf16, GgmlType::q8_0, GgmlType::q4_0, GgmlType::q4_1,
                        GgmlType::q5_0, GgmlType::q5_1, GgmlType::q2_K, GgmlType::q3_K, GgmlType::q4_K, GgmlType::q5_K,
                        GgmlType::q6_K, GgmlType::iq4_nl, GgmlType::iq4_xs}) {
    if (ascii_lower(text) == ascii_lower(ggml_type_info(type).name)) return type;
    names += (names.empty() ? "" : ", ") + std::string(ggml_type_info(type).name);
  }
  throw config_error("tensor type \"" + text + "\" is not one of " + names);
}

std::vector<std::string> gguf_type_names() {
  std::vector<std::string> names;
  for (const GgufTypeRow& row : kGgufTypes) names.push_back(row.name);
  return names;
}

GgmlType gguf_weight_type(const GgufMixture& mixture, const std::string& name, int64_t columns) {
  auto whole_blocks = [columns](GgmlType type) { return columns % ggml_type_info(type).block_values == 0; };
  const GgufTypeRow& row = type_row(mixture.type);
  if (!row.preset) return whole_blocks(row.weights) ? row.weights : GgmlType::f16;  // as the converter falls back
  // llama_tensor_get_type: the two overrides first, as given (no fallback; a type the rows do not hold is an error),
  // then the mixture unless --pure, then the fallbacks.
  const auto given = [&](const std::optional<GgmlType>& type, const char* option) {
    if (!whole_blocks(*type))
      throw config_error(std::string(option) + " " + ggml_type_info(*type).name + ": " + name + " has rows of " +
                         std::to_string(columns) + " values, not whole blocks of " +
                         std::to_string(ggml_type_info(*type).block_values) + "; pick another type");
    return *type;
  };
  if (mixture.token_embedding_type && name == "token_embd.weight")
    return given(mixture.token_embedding_type, "--token-embedding-type");
  if (mixture.output_type && name == "output.weight") return given(mixture.output_type, "--output-tensor-type");
  GgmlType type = mixture.pure ? row.weights : llama_quantize_choice(mixture, name, columns);
  if (!whole_blocks(type)) {  // llama-quant.cpp tensor_type_fallback; where it has none (q4_0 ...), f16
    type = type == GgmlType::q2_K || type == GgmlType::q3_K ? GgmlType::q4_0
           : type == GgmlType::q4_K ? GgmlType::q5_0 : type == GgmlType::q5_K ? GgmlType::q5_1
           : type == GgmlType::q6_K ? GgmlType::q8_0 : type == GgmlType::iq4_xs ? GgmlType::iq4_nl : GgmlType::f16;
    if (!whole_blocks(type)) type = GgmlType::f16;
  }
  return type;
}

uint32_t gguf_llama_ftype(GgufType type) { return type_row(type).llama_ftype; }

bool is_llama_quantize_preset(GgufType type) { return type_row(type).preset; }

}  // namespace autotrain
