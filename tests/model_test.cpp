// The decoder against transformers / PEFT (fixtures by tests/reference/model_logits.py): logits and loss
// in fp32 / bf16 / fp16 on a right-padded batch, sliding windows, greedy generation, the KV cache, LoRA
// forward and gradients, the NF4 base, gradient checkpointing, and loading errors.
#include <gtest/gtest.h>

#include <filesystem>

#include "autotrain/device.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/generation.h"
#include "autotrain/gguf.h"
#include "autotrain/model.h"
#include "autotrain/safetensors.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kModels = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/";
const std::string kReference = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/model_logits/";
const std::vector<std::string> kArchitectures = {"llama", "qwen2", "mistral", "qwen3"};
const std::vector<std::string> kAllProjections = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"};

at::Tensor reference(const std::string& file, const std::string& tensor) {
  return SafetensorsFile::open(kReference + file + ".safetensors")->tensor(tensor).clone();
}

struct Batch {
  at::Tensor input_ids, attention_mask, labels, real;  // real: (B,T) bool, the non-padding positions
};

Batch batch_of(const std::string& arch) {
  Batch b;
  b.input_ids = reference(arch + "/batch", "input_ids");
  b.attention_mask = reference(arch + "/batch", "attention_mask");
  b.labels = reference(arch + "/batch", "labels");
  b.real = b.attention_mask.to(at::kBool);
  return b;
}

// max |a - b| over the non-padding positions of (B,T,V) logits.
double max_logit_diff(const at::Tensor& a, const at::Tensor& b, const at::Tensor& real) {
  return (a.index({real}) - b.index({real})).abs().max().item<double>();
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

ModelOptions lora_options(double dropout) {
  ModelOptions options;
  options.lora_target_modules = kAllProjections;
  options.lora = LoraOptions{8, 16, dropout, false};
  return options;
}

// The PEFT adapter the oracle saved, copied into our LoRA parameters by name.
void load_peft_adapter(CausalLM& model, const std::string& arch) {
  auto file = SafetensorsFile::open(kReference + arch + "/adapter/adapter_model.safetensors");
  at::NoGradGuard no_grad;
  auto parameters = model.lora_parameters();
  ASSERT_EQ(parameters.size(), file->names().size());
  for (auto& [name, parameter] : parameters) parameter.copy_(file->tensor(name));
}

TEST(ModelParity, Fp32LogitsAndLossEqualTransformers) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    CausalLM model(kModels + arch, ModelOptions{});
    Batch b = batch_of(arch);
    at::NoGradGuard no_grad;
    at::Tensor logits = model.forward(b.input_ids, b.attention_mask);
    double logit_diff = max_logit_diff(logits, reference(arch + "/fp32", "logits"), b.real);
    double loss_diff = std::abs(causal_lm_loss(logits, b.labels).item<double>() -
                                reference(arch + "/fp32", "loss").item<double>());
    std::cout << arch << " fp32: max|dlogit| " << logit_diff << ", |dloss| " << loss_diff << "\n";
    // The same fp32 ops in the same order as transformers, through the same libtorch kernels: bit-equal
    // here (measured 0). Another CPU or thread count may split a reduction differently, a few ulps of
    // |logits| ~ 3 (~1e-6); 1e-4 leaves that room and still catches any misplaced term (a wrong rotary
    // pair, mask or norm moves logits by >= 1e-2).
    EXPECT_LE(logit_diff, 1e-4);
    EXPECT_LE(loss_diff, 1e-5);  // a mean of ~20 log-softmax values of size ~7: ulps of 7 are ~5e-7
  }
}

TEST(ModelParity, HalfPrecisionLogitsFollowTransformers) {
  for (const std::string& arch : kArchitectures) {
    for (auto [dtype, name, epsilon] : {std::tuple{at::kBFloat16, "bf16", 1.0 / 128}, {at::kHalf, "fp16", 1.0 / 1024}}) {
      SCOPED_TRACE(arch + " " + name);
      ModelOptions options;
      options.dtype = dtype;
      CausalLM model(kModels + arch, options);
      Batch b = batch_of(arch);
      at::NoGradGuard no_grad;
      at::Tensor logits = model.forward(b.input_ids, b.attention_mask);
      at::Tensor expected = reference(arch + "/" + name, "logits");
      double logit_diff = max_logit_diff(logits, expected, b.real);
      double scale = expected.index({b.real}).abs().max().item<double>();
      double loss_diff = std::abs(causal_lm_loss(logits, b.labels).item<double>() -
                                  reference(arch + "/" + name, "loss").item<double>());
      std::cout << arch << " " << name << ": max|dlogit| " << logit_diff << " (max|logit| " << scale
                << "), |dloss| " << loss_diff << "\n";
      // Both sides round every op to the dtype (epsilon = 2^-7 bf16, 2^-10 fp16: the spacing at 1). Bit-
      // equal here (measured 0: same ops, same kernels); a rounding that lands differently elsewhere
      // (another summation order) is 1 ulp of an activation, reaching the logits through the residual path
      // of 2 layers (~4 roundings) without growing past ~2 ulps of the largest logit. A wrong op (the norm
      // weight applied before the cast, rotary angles in bf16) costs tens of ulps.
      EXPECT_LE(logit_diff, 2 * epsilon * scale);
      EXPECT_LE(loss_diff, 2 * epsilon);  // the loss is computed in fp32 from those logits
    }
  }
}

TEST(ModelParity, SlidingWindowMaskEqualsTransformers) {
  for (const std::string arch : {"mistral", "qwen2", "qwen3"}) {
    SCOPED_TRACE(arch);
    CausalLM model(kReference + "window/" + arch, ModelOptions{});  // sliding_window 3 (qwen2/3: layer 1)
    Batch b = batch_of(arch);
    at::NoGradGuard no_grad;
    at::Tensor logits = model.forward(b.input_ids, b.attention_mask);
    double logit_diff = max_logit_diff(logits, reference("window/" + arch, "logits"), b.real);
    std::cout << arch << " window 3: max|dlogit| " << logit_diff << "\n";
    EXPECT_LE(logit_diff, 1e-4);  // fp32, as Fp32LogitsAndLossEqualTransformers
    // And the window matters at this length: without it the logits move far beyond that.
    EXPECT_GT(max_logit_diff(logits, reference(arch + "/fp32", "logits"), b.real), 1e-2);
  }
}

TEST(ModelGeneration, GreedyTokensEqualTransformers) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    CausalLM model(kModels + arch, ModelOptions{});
    at::Tensor prompt = reference(arch + "/batch", "prompt");
    at::Tensor expected = reference(arch + "/batch", "greedy");
    std::vector<int64_t> prompt_ids(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.numel());
    GenerationOptions options;
    options.max_new_tokens = 32;
    std::vector<int64_t> streamed;
    std::vector<int64_t> tokens = generate_tokens(model, prompt_ids, options, [&](int64_t t) { streamed.push_back(t); });
    std::vector<int64_t> wanted(expected.data_ptr<int64_t>(), expected.data_ptr<int64_t>() + expected.numel());
    EXPECT_EQ(tokens, wanted);
    EXPECT_EQ(streamed, tokens);
    // A stop token ends generation and is included.
    options.stop_token_ids = {wanted[3]};
    auto first_stop = std::find(wanted.begin(), wanted.end(), wanted[3]);
    EXPECT_EQ(generate_tokens(model, prompt_ids, options), std::vector<int64_t>(wanted.begin(), first_stop + 1));
  }
}

TEST(ModelGeneration, SamplingIsReproducibleForASeed) {
  CausalLM model(kModels + "llama", ModelOptions{});
  GenerationOptions options;
  options.max_new_tokens = 16;
  options.temperature = 0.8;
  options.top_p = 0.9;
  auto a = generate_tokens(model, {1, 5, 9}, options);
  auto b = generate_tokens(model, {1, 5, 9}, options);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 16u);
  options.seed = 43;
  EXPECT_NE(generate_tokens(model, {1, 5, 9}, options), a);
}

// The cache's buffers grow by half from the prefill's 6 positions (6, 9, 13, ...; from 7 with room reserved for
// 7), and with a cache the query heads that share a key/value head (groups of 2 here) attend as rows of one query
// instead of the keys being repeated: the same logits as the full forward, with the sliding-window models too.
TEST(ModelGeneration, KVCacheForwardEqualsFullForward) {
  std::vector<std::pair<std::string, std::string>> models;
  for (const std::string& arch : kArchitectures) models.push_back({arch, kModels + arch});
  for (const std::string arch : {"mistral", "qwen2", "qwen3"})
    models.push_back({arch + " window 3", kReference + "window/" + arch});
  for (const auto& [name, folder] : models) {
    const std::string arch = name.substr(0, name.find(' '));
    SCOPED_TRACE(name);
    CausalLM model(folder, ModelOptions{});
    Batch b = batch_of(arch);
    at::NoGradGuard no_grad;
    at::Tensor full = model.forward(b.input_ids, b.attention_mask);
    // Prefill 6 positions (row 2 has padding in them), then one position per step.
    KVCache cache = model.make_cache();
    if (name == "llama") cache.reserve(7);
    const int64_t T = b.input_ids.size(1), prefill = 6;
    std::vector<at::Tensor> pieces = {
        model.forward(b.input_ids.narrow(1, 0, prefill), b.attention_mask.narrow(1, 0, prefill), &cache)};
    for (int64_t t = prefill; t < T; ++t)
      pieces.push_back(model.forward(b.input_ids.narrow(1, t, 1), b.attention_mask.narrow(1, t, 1), &cache));
    EXPECT_EQ(cache.length(), T);
    double diff = max_logit_diff(at::cat(pieces, 1), full, b.real);
    std::cout << name << " cache vs full: " << diff << "\n";
    EXPECT_LE(diff, 1e-5);  // same values, another SDPA shape per step: fp32 ulps of logits ~5
  }
}

// What generation takes of a forward, the last position's logits alone (the LM head on one position, as transformers'
// logits_to_keep=1), equals that position of the full logits, with and without a cache: a 6-token prompt (row 0 of
// the batch, no padding), then one token.
TEST(ModelGeneration, NextTokenLogitsAreTheLastPositionsOfTheFullLogits) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    CausalLM model(kModels + arch, ModelOptions{});
    const at::Tensor ids = batch_of(arch).input_ids.narrow(0, 0, 1);
    at::NoGradGuard no_grad;
    const at::Tensor full = model.forward(ids);
    const at::Tensor last = model.next_token_logits(ids);
    ASSERT_EQ(last.sizes(), (std::vector<int64_t>{1, full.size(2)}));
    EXPECT_LE((last - full.select(1, -1)).abs().max().item<double>(), 1e-5);  // one GEMM row instead of T
    KVCache cache = model.make_cache();
    const int64_t T = ids.size(1);
    const at::Tensor prompt = model.next_token_logits(ids.narrow(1, 0, T - 1), &cache);
    const at::Tensor step = model.next_token_logits(ids.narrow(1, T - 1, 1), &cache);
    EXPECT_LE((prompt - full.select(1, T - 2)).abs().max().item<double>(), 1e-5);
    EXPECT_LE((step - full.select(1, T - 1)).abs().max().item<double>(), 1e-5);
    EXPECT_GT(full.select(1, -1).abs().max().item<double>(), 0.1);
  }
}

// generate's --dtype auto: fp32 on the CPU; on a GPU the checkpoint's 16-bit dtype, bf16 for an fp32 checkpoint, fp16
// where the GPU has no native bf16; a named dtype as named, whatever the device.
TEST(ModelGeneration, AutoDtypeIsFp32OnTheCpuAndTheCheckpointsOnAGpu) {
  const at::Device cpu(at::kCPU), gpu(at::kCUDA, 0);
  EXPECT_TRUE(bf16_native(cpu));
  EXPECT_EQ(generation_dtype("auto", cpu, at::kBFloat16, true), at::kFloat);
  EXPECT_EQ(generation_dtype("auto", gpu, at::kBFloat16, true), at::kBFloat16);
  EXPECT_EQ(generation_dtype("auto", gpu, at::kHalf, true), at::kHalf);
  EXPECT_EQ(generation_dtype("auto", gpu, at::kFloat, true), at::kBFloat16);
  EXPECT_EQ(generation_dtype("auto", gpu, at::kBFloat16, false), at::kHalf);
  EXPECT_EQ(generation_dtype("fp32", gpu, at::kBFloat16, true), at::kFloat);
  EXPECT_EQ(generation_dtype("bf16", cpu, at::kFloat, true), at::kBFloat16);
  EXPECT_EQ(generation_dtype("fp16", gpu, at::kBFloat16, false), at::kHalf);
  EXPECT_THROW(generation_dtype("int8", cpu, at::kFloat, true), Error);
}

TEST(ModelLora, LogitsLossAndGradientsEqualPeft) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    CausalLM model(kModels + arch, lora_options(0.0));
    load_peft_adapter(model, arch);
    Batch b = batch_of(arch);
    at::Tensor logits = model.forward(b.input_ids, b.attention_mask);
    at::Tensor loss = causal_lm_loss(logits, b.labels);
    const std::string file = arch + "/lora";
    double logit_diff = max_logit_diff(logits, reference(file, "logits"), b.real);
    double loss_diff = std::abs(loss.item<double>() - reference(file, "loss").item<double>());
    loss.backward();
    double grad_diff = 0;
    auto expected = SafetensorsFile::open(kReference + file + ".safetensors");
    for (const auto& [name, parameter] : model.lora_parameters()) {
      ASSERT_TRUE(parameter.grad().defined()) << name;
      grad_diff = std::max(grad_diff, max_diff(parameter.grad(), expected->tensor("grad." + name)));
    }
    std::cout << arch << " lora: max|dlogit| " << logit_diff << ", |dloss| " << loss_diff << ", max|dgrad| "
              << grad_diff << "\n";
    EXPECT_LE(logit_diff, 1e-4);  // as the fp32 base model: the LoRA terms add a few more fp32 sums
    EXPECT_LE(loss_diff, 1e-5);
    // Gradients are ~1e-2 in size and come from the same ops backwards; fp32 ulps of their sums are ~1e-9.
    EXPECT_LE(grad_diff, 1e-5);
  }
}

TEST(ModelLora, ParametersAreNamedAndOrderedAsPeft) {
  CausalLM model(kModels + "qwen2", lora_options(0.0));
  auto parameters = model.lora_parameters();
  ASSERT_EQ(parameters.size(), 2u * 7 * 2);
  EXPECT_EQ(parameters[0].first, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(parameters[1].first, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  EXPECT_EQ(parameters[13].first, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  EXPECT_EQ(parameters[14].first, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  for (const auto& [name, parameter] : parameters) EXPECT_TRUE(parameter.requires_grad()) << name;
  // Only the requested targets get LoRA.
  ModelOptions options = lora_options(0.0);
  options.lora_target_modules = {"v_proj", "q_proj"};
  EXPECT_EQ(CausalLM(kModels + "qwen2", options).lora_parameters().size(), 2u * 2 * 2);
}

TEST(ModelLora, InitialisationEqualsPeftForTheSameSeed) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    torch::manual_seed(7);  // the oracle's seed before get_peft_model
    CausalLM model(kModels + arch, lora_options(0.0));
    auto expected = SafetensorsFile::open(kReference + arch + "/lora.safetensors");
    for (const auto& [name, parameter] : model.lora_parameters()) {
      if (name.find("lora_A") != std::string::npos)
        EXPECT_TRUE(at::equal(parameter, expected->tensor("init." + name))) << name;  // same draws, same bits
      else
        EXPECT_TRUE(at::equal(parameter, at::zeros_like(parameter))) << name;
    }
  }
}

TEST(ModelQuantized, Nf4LogitsEqualTransformersOnDequantizedWeights) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    ModelOptions options;
    options.quantization = BaseQuantization::int4;  // NF4, blocksize 64, no double quantization
    CausalLM model(kModels + arch, options);
    Batch b = batch_of(arch);
    at::NoGradGuard no_grad;
    at::Tensor logits = model.forward(b.input_ids, b.attention_mask);
    double diff = max_logit_diff(logits, reference(arch + "/nf4", "logits"), b.real);
    std::cout << arch << " nf4: max|dlogit| " << diff << "\n";
    // Our NF4 bytes equal bitsandbytes' (quant_test) and dequantize to the same fp32 values, so this is
    // the fp32 comparison again.
    EXPECT_LE(diff, 1e-4);
  }
}

// Generation on an NF4 base (what `generate --quantization int4` loads, and the base a QLoRA adapter was trained
// on): transformers' greedy tokens on the same dequantized weights, all 32 of them.
TEST(ModelQuantized, Nf4GreedyTokensEqualTransformersOnDequantizedWeights) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    ModelOptions options;
    options.quantization = BaseQuantization::int4;
    CausalLM model(kModels + arch, options);
    at::Tensor prompt = reference(arch + "/batch", "prompt");
    at::Tensor expected = reference(arch + "/nf4", "greedy");
    std::vector<int64_t> prompt_ids(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.numel());
    GenerationOptions generation;
    generation.max_new_tokens = 32;
    std::vector<int64_t> wanted(expected.data_ptr<int64_t>(), expected.data_ptr<int64_t>() + expected.numel());
    EXPECT_EQ(generate_tokens(model, prompt_ids, generation), wanted);
    // The quantization matters: the fp32 model's tokens differ somewhere.
    at::Tensor fp32 = reference(arch + "/batch", "greedy");
    EXPECT_FALSE(at::equal(fp32, expected)) << "NF4 and fp32 greedy tokens are the same: the test tells nothing";
  }
}

// The weights as a q4_0 GGUF stores them (eval / generate --gguf-type): transformers with every 2-D weight through
// gguf-py's quantize and dequantize gives the same logits (within fp32 rounding, 1e-4 as above) and all 32 greedy
// tokens; the llama q/k rows stay in HF's order, which a row's blocks do not notice.
TEST(ModelGguf, Q4_0WeightsGiveTransformersLogitsAndGreedyTokens) {
  for (const std::string& arch : kArchitectures) {
    SCOPED_TRACE(arch);
    ModelOptions options;
    options.weight_transform = gguf_round_trip(kModels + arch, GgufType::q4_0);
    CausalLM model(kModels + arch, options);
    Batch b = batch_of(arch);
    at::Tensor logits;
    {
      at::NoGradGuard no_grad;
      logits = model.forward(b.input_ids, b.attention_mask);
    }
    EXPECT_LE(max_logit_diff(logits, reference(arch + "/gguf_q4_0", "logits"), b.real), 1e-4);
    at::Tensor prompt = reference(arch + "/batch", "prompt");
    std::vector<int64_t> prompt_ids(prompt.data_ptr<int64_t>(), prompt.data_ptr<int64_t>() + prompt.numel());
    GenerationOptions generation;
    generation.max_new_tokens = 32;
    at::Tensor expected = reference(arch + "/gguf_q4_0", "greedy");
    std::vector<int64_t> wanted(expected.data_ptr<int64_t>(), expected.data_ptr<int64_t>() + expected.numel());
    EXPECT_EQ(generate_tokens(model, prompt_ids, generation), wanted);
    EXPECT_FALSE(at::equal(reference(arch + "/batch", "greedy"), expected)) << "q4_0 changes no token: a weak test";
  }
}

// gemv_tiles (what `generate` asks for unless AUTOTRAIN_GEMV_TILES=0) is for the tensor-core GEMV on a GPU: a model
// on the CPU keeps the rows layout and its logits (the GPU side is CudaGenerate.TilesLayoutGivesTheLogitsOfTheRowsLayout).
TEST(ModelQuantized, GemvTilesLeavesACpuModelAsItIs) {
  ModelOptions options;
  options.quantization = BaseQuantization::int4;
  options.gemv_tiles = true;
  CausalLM model(kModels + "llama", options);
  EXPECT_EQ(model.gemv_tiled_projections(), 0);
  Batch b = batch_of("llama");
  at::NoGradGuard no_grad;
  EXPECT_LT(max_logit_diff(model.forward(b.input_ids, b.attention_mask), reference("llama/nf4", "logits"), b.real),
            1e-4);
}

TEST(ModelTraining, GradientCheckpointingGivesTheSameLoraGradients) {
  Batch b = batch_of("llama");
  std::vector<std::vector<at::Tensor>> gradients;
  std::vector<double> losses;
  for (bool checkpointing : {false, true}) {
    ModelOptions options = lora_options(0.1);  // dropout on: the recompute must redraw the same masks
    options.gradient_checkpointing = checkpointing;
    CausalLM model(kModels + "llama", options);
    load_peft_adapter(model, "llama");
    model.set_training(true);
    torch::manual_seed(11);
    at::Tensor loss = causal_lm_loss(model.forward(b.input_ids, b.attention_mask), b.labels);
    loss.backward();
    losses.push_back(loss.item<double>());
    gradients.emplace_back();
    for (const auto& [name, parameter] : model.lora_parameters()) gradients.back().push_back(parameter.grad());
  }
  EXPECT_EQ(losses[0], losses[1]);
  double diff = 0;
  for (size_t i = 0; i < gradients[0].size(); ++i) diff = std::max(diff, max_diff(gradients[0][i], gradients[1][i]));
  std::cout << "checkpointing: max|dgrad| " << diff << "\n";
  // The recompute is the same computation with the same dropout masks: equal up to fp32 accumulation
  // order in the backward (none expected on one thread; 1e-6 leaves room for threaded reductions).
  EXPECT_LE(diff, 1e-6);
}

TEST(ModelTraining, QloraBf16BackwardReachesEveryLoraParameter) {
  // The trainer's configuration: NF4 base, bf16 compute, LoRA on all projections, checkpointing.
  ModelOptions options = lora_options(0.05);
  options.dtype = at::kBFloat16;
  options.quantization = BaseQuantization::int4;
  options.gradient_checkpointing = true;
  CausalLM model(kModels + "qwen2", options);
  load_peft_adapter(model, "qwen2");
  model.set_training(true);
  Batch b = batch_of("qwen2");
  at::Tensor loss = causal_lm_loss(model.forward(b.input_ids, b.attention_mask), b.labels);
  EXPECT_EQ(loss.scalar_type(), at::kFloat);
  loss.backward();
  for (const auto& [name, parameter] : model.lora_parameters()) {
    ASSERT_TRUE(parameter.grad().defined()) << name;
    EXPECT_EQ(parameter.grad().scalar_type(), at::kFloat) << name;  // LoRA stays fp32, as PEFT
    EXPECT_TRUE(parameter.grad().isfinite().all().item<bool>()) << name;
    EXPECT_GT(parameter.grad().abs().max().item<double>(), 0) << name;
  }
}

// A copy of the llama fixture whose tensors went through `edit`.
std::string edited_llama(const testing::TempDir& dir,
                         const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
  Checkpoint checkpoint = Checkpoint::open(kModels + "llama");
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const std::string& name : checkpoint.names()) tensors.emplace_back(name, checkpoint.tensor(name));
  edit(tensors);
  write_safetensors(dir.file("model.safetensors"), tensors);
  std::filesystem::copy_file(kModels + "llama/config.json", dir.file("config.json"));
  return dir.path().string();
}

// Multi-head attention (as Llama-2-7B: a key/value head per query head), made from the llama fixture by repeating
// each key/value head for the query heads it serves: the same model, so the same logits as the grouped one (checked
// against transformers elsewhere). Through the KV cache its decoding steps take the path without grouped heads and
// without a mask (one new position sees every key: SDPA's is_causal there would align its triangle to the first
// key and see one key only), and give the full forward's logits.
TEST(ModelGeneration, MultiHeadAttentionDecodesAsItsFullForward) {
  testing::TempDir dir;
  const int64_t heads = 4, kv_heads = 2, head_dim = 16;  // the fixture's (config.json)
  const std::string folder = edited_llama(dir, [&](auto& tensors) {
    for (auto& [name, tensor] : tensors)
      if (name.find("k_proj.weight") != std::string::npos || name.find("v_proj.weight") != std::string::npos)
        tensor = tensor.view({kv_heads, head_dim, -1})
                     .repeat_interleave(heads / kv_heads, 0)
                     .reshape({heads * head_dim, -1});
  });
  std::string config = read_file(dir.file("config.json"));
  const std::string grouped = "\"num_key_value_heads\": 2";
  ASSERT_NE(config.find(grouped), std::string::npos);
  config.replace(config.find(grouped), grouped.size(), "\"num_key_value_heads\": 4");
  write_file_atomic(dir.file("config.json"), config);

  CausalLM mha(folder, ModelOptions{}), gqa(kModels + "llama", ModelOptions{});
  ASSERT_EQ(mha.config().num_key_value_heads, heads);
  const at::Tensor ids = batch_of("llama").input_ids.narrow(0, 0, 1);
  at::NoGradGuard no_grad;
  const at::Tensor full = mha.forward(ids);
  EXPECT_LE((full - gqa.forward(ids)).abs().max().item<double>(), 1e-5);
  KVCache cache = mha.make_cache();
  const int64_t T = ids.size(1), prefill = 3;
  const at::Tensor prompt = mha.next_token_logits(ids.narrow(1, 0, prefill), &cache);
  EXPECT_LE((prompt - full.select(1, prefill - 1)).abs().max().item<double>(), 1e-5);
  for (int64_t t = prefill; t < T; ++t) {
    const at::Tensor step = mha.next_token_logits(ids.narrow(1, t, 1), &cache);
    EXPECT_LE((step - full.select(1, t)).abs().max().item<double>(), 1e-5) << "position " << t;
  }
}

TEST(ModelLoad, MissingTensorNamesTheFolderAndTensor) {
  testing::TempDir dir;
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  std::string folder = edited_llama(dir, [&](auto& tensors) {
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [&](auto& t) { return t.first == name; }),
                  tensors.end());
  });
  std::string message = testing::error_message_of([&] { CausalLM(folder, ModelOptions{}); });
  EXPECT_NE(message.find(folder + ": tensor " + name + " is missing"), std::string::npos) << message;
}

TEST(ModelLoad, WrongShapeNamesTheFileTensorAndShapes) {
  testing::TempDir dir;
  const std::string name = "model.layers.1.self_attn.k_proj.weight";
  std::string folder = edited_llama(dir, [&](auto& tensors) {
    for (auto& [n, t] : tensors)
      if (n == name) t = at::zeros({64, 64});
  });
  std::string message = testing::error_message_of([&] { CausalLM(folder, ModelOptions{}); });
  EXPECT_NE(message.find("model.safetensors: tensor " + name + " has shape [64, 64], config.json wants [32, 64]"),
            std::string::npos)
      << message;
}

TEST(ModelLoad, WrongDtypeNamesTheFileAndTensor) {
  testing::TempDir dir;
  const std::string name = "model.norm.weight";
  std::string folder = edited_llama(dir, [&](auto& tensors) {
    for (auto& [n, t] : tensors)
      if (n == name) t = at::zeros({64}, at::kInt);
  });
  std::string message = testing::error_message_of([&] { CausalLM(folder, ModelOptions{}); });
  EXPECT_NE(message.find("model.safetensors: tensor " + name + " has dtype I32"), std::string::npos) << message;
}

TEST(ModelLoad, ExtraTensorsAreIgnoredAndWeightsFrozen) {
  testing::TempDir dir;
  std::string folder = edited_llama(dir, [&](auto& tensors) {
    tensors.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", at::ones({8}));  // silently
    tensors.emplace_back("model.extra.weight", at::ones({3}));                             // with a warning
  });
  ModelOptions options;
  options.dtype = at::kBFloat16;
  CausalLM model(folder, options);
  at::Tensor logits = model.forward(at::tensor({1, 2, 3}, at::kLong).view({1, 3}));
  EXPECT_EQ(logits.scalar_type(), at::kFloat);
  EXPECT_FALSE(logits.requires_grad());  // nothing trainable without LoRA
}

}  // namespace
}  // namespace autotrain
