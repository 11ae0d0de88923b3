// estimate-cost: every memory and FLOP term against arithmetic done by hand (written next to each check),
// the seed's DeepSeek-R1-Distill-Qwen-32B run, the verdicts and the command's errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "autotrain/config.h"
#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "test_util.h"

namespace autotrain {
namespace {

// The llama fixture's shape: hidden 64, intermediate 176, 2 layers, 4 heads of 16, 2 kv heads, vocab 1000.
// Projections (out x in): q 64x64 = 4096, k 32x64 = 2048, v 2048, o 4096, gate/up 176x64 = 11264,
// down 64x176 = 11264; per layer 46080 weights, 92160 in the 2 layers.
ModelConfig small_config() {
  ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 1000;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  return c;
}

// fp16, NF4 (blocksize 64, no double quant), LoRA r 8 on q and v with dropout, batch 2 x block 128 = 256 tokens.
RunShape small_shape() {
  RunShape s;
  s.batch_size = 2;
  s.block_size = 128;
  s.gradient_accumulation = 4;
  s.compute_bytes = 2;
  s.quantization = BaseQuantization::int4;
  s.target_modules = {"q_proj", "v_proj"};
  s.lora_r = 8;
  s.lora_dropout = 0.05;
  s.gradient_checkpointing = true;
  return s;
}

// DeepSeek-R1-Distill-Qwen-32B's config.json (the keys that matter here).
const char* kQwen32bConfig = R"({"model_type": "qwen2", "hidden_size": 5120, "intermediate_size": 27648,
  "num_hidden_layers": 64, "num_attention_heads": 40, "num_key_value_heads": 8, "vocab_size": 152064,
  "tie_word_embeddings": false, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0, "hidden_act": "silu", "torch_dtype": "bfloat16", "use_sliding_window": false})";

// The seed's training_params.json, verbatim.
const char* kSeedParams = R"({"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "project_name": "autotrain-Batch5",
  "data_path": "kor-kms/2024_second_half", "add_eos_token": true, "block_size": 512, "model_max_length": 2048,
  "mixed_precision": "fp16", "lr": 0.0001, "epochs": 2, "batch_size": 5, "gradient_accumulation": 4,
  "optimizer": "adamw_torch", "scheduler": "linear", "chat_template": "none", "quantization": "int4",
  "target_modules": "q_proj, k_proj, v_proj", "peft": true, "lora_r": 16, "lora_alpha": 16,
  "lora_dropout": 0.05, "unsloth": false})";

TEST(EstimateMemory, BaseWeightsByQuantization) {
  const ModelConfig c = small_config();
  RunShape s = small_shape();
  // NF4: n/2 packed + 4 B absmax per 64: q 2048 + 4*64 = 2304, k and v 1024 + 4*32 = 1152, o 2304,
  // gate/up/down 5632 + 4*176 = 6336. Per layer 2304 + 2*1152 + 2304 + 3*6336 = 25920; 2 layers 51840.
  EXPECT_EQ(estimate_base_weight_bytes(c, s), 51840);
  // Double quantization: uint8 per block + fp32 per 256 blocks + fp32 offset: q 2048 + 64 + 4 + 4 = 2120,
  // k/v 1024 + 32 + 8 = 1064, gate/up/down 5632 + 176 + 8 = 5816. (2120*2 + 1064*2 + 5816*3) * 2 = 47632.
  s.four_bit.double_quantize = true;
  EXPECT_EQ(estimate_base_weight_bytes(c, s), 47632);
  // int8: 1 B per weight + fp32 per row: q 4096 + 4*64 = 4352, k/v 2048 + 128 = 2176, o 4352,
  // gate/up 11264 + 4*176 = 11968, down 11264 + 4*64 = 11520. Per layer 48512; 2 layers 97024.
  s.quantization = BaseQuantization::int8;
  EXPECT_EQ(estimate_base_weight_bytes(c, s), 97024);
  // none, fp16: 2 B x 92160 = 184320; fp32: 368640.
  s.quantization = BaseQuantization::none;
  EXPECT_EQ(estimate_base_weight_bytes(c, s), 184320);
  s.compute_bytes = 4;
  EXPECT_EQ(estimate_base_weight_bytes(c, s), 368640);
}

TEST(EstimateMemory, ProjectionBiasIsInTheComputeDtype) {
  RunShape s = small_shape();
  // 64x64 NF4 = 2304, + a 64-element fp16 bias = 128.
  EXPECT_EQ(estimate_projection_weight_bytes(64, 64, true, s), 2304 + 128);
}

TEST(EstimateMemory, UnquantizedWeightsCountATiedHeadOnce) {
  ModelConfig c = small_config();
  const RunShape s = small_shape();
  // fp16: embedding + lm_head 2 * 1000 * 64 + norms (2 per layer + final = 5) * 64 = 128320 values x 2 B.
  EXPECT_EQ(estimate_unquantized_weight_bytes(c, s), 256640);
  c.tie_word_embeddings = true;  // 64000 + 320 values x 2 B
  EXPECT_EQ(estimate_unquantized_weight_bytes(c, s), 128640);
}

TEST(EstimateMemory, LoraParametersGradientsAndAdamW) {
  const ModelConfig c = small_config();
  const RunShape s = small_shape();
  // r (in + out): q 8 * (64 + 64) = 1024, v 8 * (64 + 32) = 768; 1792 per layer, 3584 in 2 layers; 16 B each.
  EXPECT_EQ(estimate_lora_parameter_count(c, s), 3584);
  EXPECT_EQ(estimate_lora_bytes(c, s), 57344);
}

TEST(EstimateMemory, LoraBytesFollowTheOptimizersState) {
  const ModelConfig c = small_config();
  // The state each `optimizer` keeps per parameter (optimizer.h), beside the fp32 parameter and its gradient.
  for (const auto& [optimizer, bytes] : std::vector<std::pair<std::string, int64_t>>{
           {"adamw_torch", 16}, {"paged_adamw_8bit", 16}, {"lion_8bit", 12}, {"rmsprop", 12}, {"adagrad", 12},
           {"sgd", 8}}) {
    nlohmann::json config = nlohmann::json::parse(kSeedParams);
    config["optimizer"] = optimizer;
    const RunShape s = run_shape(parse_training_params(config, "seed"));
    EXPECT_EQ(estimate_lora_bytes(c, s), bytes * estimate_lora_parameter_count(c, s)) << optimizer;
  }
  // Adafactor: 4 B per row and column of each A (r x in) and B (out x r). The seed's q, k, v at r 16 on the small
  // config (q 64 -> 64, k and v 64 -> 32): A's 3 x (16 + 64) = 240, B's (64 + 16) + 2 x (32 + 16) = 176; 416
  // values a layer, 2 layers.
  nlohmann::json config = nlohmann::json::parse(kSeedParams);
  config["optimizer"] = "adafactor";
  const RunShape s = run_shape(parse_training_params(config, "seed"));
  EXPECT_EQ(estimate_lora_bytes(c, s), 8 * estimate_lora_parameter_count(c, s) + 4 * 416 * 2);
}

TEST(EstimateMemory, LayerActivationsPerToken) {
  const ModelConfig c = small_config();
  RunShape s = small_shape();
  // fp16 on CUDA: norms 2 * (4*64 + 4) = 520; attention q, k, v, out 4 * 2 * 64 + logsumexp 4 * 4 = 528;
  // MLP 3 * 2 * 176 = 1056; LoRA q and v each 4*8 (A's output) + (1 + 4) * 64 (mask + dropout output) = 352.
  // 520 + 528 + 1056 + 704 = 2808.
  EXPECT_EQ(estimate_layer_activation_bytes_per_token(c, s), 2808);
  // On the CPU dropout keeps a float noise tensor: LoRA 32 + 8 * 64 = 544 each -> 2808 - 704 + 1088 = 3192.
  s.target = ExecutionTarget::cpu;
  EXPECT_EQ(estimate_layer_activation_bytes_per_token(c, s), 3192);
  // Math attention keeps scaled q and k, v (3 * 2 * 64 = 384) and the probabilities 2 B * 4 heads * 128:
  // 1408 instead of 528 -> 3192 + 880 = 4072.
  s.attention = AttentionKernel::math;
  EXPECT_EQ(estimate_layer_activation_bytes_per_token(c, s), 4072);
  // fp32, no dropout, LoRA on q, k, v: norms 520, attention 4*4*64 + 16 = 1040, MLP 3*4*176 = 2112,
  // LoRA 3 * 4*8 = 96 + the shared fp32 input once 4*64 = 256. 520 + 1040 + 2112 + 352 = 4024.
  s = small_shape();
  s.compute_bytes = 4;
  s.lora_dropout = 0;
  s.target_modules = {"q_proj", "k_proj", "v_proj"};
  EXPECT_EQ(estimate_layer_activation_bytes_per_token(c, s), 4024);
}

TEST(EstimateMemory, Qwen3HeadNormsKeepTheirInputs) {
  ModelConfig c = small_config();
  c.qk_norm = true;
  // fp16 on CUDA as the first case of LayerActivationsPerToken (2808), plus q_norm and k_norm as the layer norms:
  // the fp32 input of q (64 wide) and k (32 wide), 4 * 96 = 384, and rsqrt per head, 4 * (4 + 2) = 24.
  EXPECT_EQ(estimate_layer_activation_bytes_per_token(c, small_shape()), 2808 + 408);
}

// Qwen3-8B's config.json (the keys that matter here): head_dim 128 is its own (4096 / 32 happens to agree).
const char* kQwen3_8bConfig = R"({"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288,
  "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
  "vocab_size": 151936, "tie_word_embeddings": false, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000, "hidden_act": "silu", "torch_dtype": "bfloat16", "attention_bias": false,
  "use_sliding_window": false, "sliding_window": null, "max_window_layers": 36})";

TEST(EstimateMemory, Qwen3WeightsCountEveryParameterOfTransformersModel) {
  testing::TempDir dir;
  testing::write_text(dir.file("config.json"), kQwen3_8bConfig);
  const ModelConfig c = load_model_config(dir.path().string());
  RunShape s = small_shape();
  s.quantization = BaseQuantization::none;
  s.compute_bytes = 2;
  // transformers 5.23, Qwen3ForCausalLM(config) on the meta device: 8190735360 parameters, 6945767424 of them in
  // the projections. By hand: per layer q, o 4096x4096, k, v 1024x4096, gate/up/down 12288x4096 = 192937984, x 36;
  // the rest 2 x 151936 x 4096 + 36 x (2 x 4096 + 2 x 128 head norms) + 4096.
  EXPECT_EQ(estimate_base_weight_bytes(c, s), 2 * 6945767424LL);
  EXPECT_EQ(estimate_base_weight_bytes(c, s) + estimate_unquantized_weight_bytes(c, s), 2 * 8190735360LL);
}

TEST(EstimateMemory, ActivationsWithAndWithoutCheckpointing) {
  const ModelConfig c = small_config();
  RunShape s = small_shape();
  // 256 tokens; checkpointed: 2 layer inputs of 2 * 64 B + the final norm's fp32 input 4*64 + 4 and its fp16
  // output 2*64 (kept by the loss) = 644 B per token.
  EXPECT_EQ(estimate_activation_bytes(c, s), 256 * 644);
  // Not checkpointed: 2 layers * 2808 + 260 + 128 = 6004 B per token.
  s.gradient_checkpointing = false;
  EXPECT_EQ(estimate_activation_bytes(c, s), 256 * 6004);
}

TEST(EstimateMemory, LogitsAndBackwardWorkingSet) {
  const ModelConfig c = small_config();
  RunShape s = small_shape();
  // The 256 tokens fit one chunk of 256 MiB: 3 fp32 buffers of 256 tokens x 1000 vocab + d hidden 2 * 64 * 256.
  EXPECT_EQ(estimate_logits_bytes(c, s), 3 * 4 * 1000 * 256 + 2 * 64 * 256);
  // Chunks of 100 tokens: the buffers of 100 tokens only.
  s.loss_chunk_bytes = 100 * 1000 * 4;
  EXPECT_EQ(estimate_logits_bytes(c, s), 3 * 4 * 1000 * 100 + 2 * 64 * 256);
  s.loss_chunk_bytes = kDefaultLossChunkBytes;
  // NF4 on CUDA: the largest projection (11264) dequantized to fp16 = 22528; layer gradients
  // 2 * (3*176 + 2*64) * 256 = 335872; the recomputed layer 2808 * 256 = 718848.
  EXPECT_EQ(estimate_backward_working_bytes(c, s), 22528 + 335872 + 718848);
}

TEST(EstimateMemory, PeakTakesTheLargerOfLogitsAndWorkingSet) {
  const ModelConfig c = small_config();
  const RunShape s = small_shape();
  const MemoryBreakdown m = estimate_memory(c, s);
  EXPECT_EQ(m.cuda_context, 500LL << 20);
  // Per-step memory = activations 164864 + max(logits 3104768, working 1077248); slack 10% of it.
  EXPECT_EQ(m.allocator_slack, static_cast<int64_t>(0.10 * (164864 + 3104768)));
  EXPECT_EQ(m.peak(), 51840 + 256640 + 57344 + 164864 + 3104768 + (500LL << 20) + m.allocator_slack);
}

TEST(EstimateFlops, TermsPerToken) {
  const ModelConfig c = small_config();
  RunShape s = small_shape();
  // Frozen linear params N = 92160 + lm_head 64000 = 156160. LoRA forward 2 * 3584 = 7168.
  // Attention forward 4 * T 128 * q_size 64 * 2 layers = 65536.
  EXPECT_EQ(estimate_frozen_linear_parameter_count(c), 156160);
  const FlopsPerToken f = estimate_flops_per_token(c, s);
  EXPECT_DOUBLE_EQ(f.forward, 2 * 156160 + 7168 + 65536);         // 385024
  EXPECT_DOUBLE_EQ(f.backward, 2 * 156160 + 2 * 7168 + 2 * 65536);  // 457728
  // The loss's lm_head once more (2 * 64000) + the layers: 385024.
  EXPECT_DOUBLE_EQ(f.recompute, 2 * 64000 + 2 * 92160 + 7168 + 65536);
  s.gradient_checkpointing = false;
  EXPECT_DOUBLE_EQ(estimate_flops_per_token(c, s).recompute, 2 * 64000);
}

TEST(EstimateTime, HoursAndDollarsScaleWithGpusAndPrice) {
  const ModelConfig c = small_config();
  RunShape s = small_shape();
  s.quantization = BaseQuantization::none;  // no dequantization traffic: time is FLOPs / (TFLOPS x 0.45)
  const DatasetSize data = dataset_size(256 * 100, s, 2, "data");  // 200 blocks, 100 micro-batches, 2 epochs
  EXPECT_EQ(data.blocks, 200);
  EXPECT_EQ(data.micro_batches_per_epoch, 100);
  EXPECT_EQ(data.optimizer_steps_per_epoch, 25);
  GpuSpec gpu{"X", 24, 300, 100, true, 2.0, ""};
  const double flops = estimate_flops_per_token(c, s).total();
  const TimeEstimate one = estimate_time(c, s, data, gpu, 1, std::nullopt);
  EXPECT_NEAR(one.gpu_hours, 51200 * flops / (100e12 * 0.45) / 3600, 1e-15);
  EXPECT_NEAR(*one.dollars, one.gpu_hours * 2.0, 1e-15);
  const TimeEstimate four = estimate_time(c, s, data, gpu, 4, 1.0);
  EXPECT_NEAR(four.hours, one.hours / 4, 1e-15);
  EXPECT_NEAR(*four.dollars, one.gpu_hours * 1.0, 1e-15);
  // 127 tokens make no block of 128.
  EXPECT_NE(testing::error_message_of([&] { dataset_size(127, s, 1, "data/train.jsonl"); }).find("no block"),
            std::string::npos);
}

TEST(EstimateSeed, Qwen32bNf4WeightBytesByHand) {
  const TrainingParams params = parse_training_params(nlohmann::json::parse(kSeedParams), "seed");
  const RunShape s = run_shape(params);
  EXPECT_EQ(s.block_size, 512);
  EXPECT_EQ(s.batch_size, 5);
  EXPECT_EQ(s.compute_bytes, 2);
  EXPECT_EQ(s.quantization, BaseQuantization::int4);
  EXPECT_EQ(s.target_modules, (std::vector<std::string>{"q_proj", "k_proj", "v_proj"}));
  EXPECT_TRUE(s.gradient_checkpointing);
  testing::TempDir dir;
  testing::write_text(dir.file("config.json"), kQwen32bConfig);
  const ModelConfig c = load_model_config(dir.path().string());
  // head_dim 5120 / 40 = 128; kv 8 * 128 = 1024; qwen2: q/k/v biases (fp16).
  // q 5120x5120 = 26214400: 13107200 packed + 409600 blocks * 4 = 14745600, + bias 10240.
  // k, v 1024x5120 = 5242880: 2621440 + 81920 * 4 = 2949120, + bias 2048 each.
  // o 14745600. gate/up/down 27648x5120 = 141557760: 70778880 + 2211840 * 4 = 79626240 each.
  // Per layer 14755840 + 2 * 2951168 + 14745600 + 3 * 79626240 = 274282496; 64 layers = 17554079744
  // (0.5625 B per weight, 16.35 GiB).
  EXPECT_EQ(estimate_base_weight_bytes(c, s), 17554079744LL);
  // Embedding + lm_head (untied) 2 * 152064 * 5120 + 129 norms * 5120 = 1557795840 values x 2 B.
  EXPECT_EQ(estimate_unquantized_weight_bytes(c, s), 3115591680LL);
  // LoRA r16: q 16 * 10240 + k, v 16 * 6144 = 360448 per layer, x 64 = 23068672.
  EXPECT_EQ(estimate_lora_parameter_count(c, s), 23068672);
  // Checkpointed: 2560 tokens x (64 layers x 2 B x 5120 + 4 * 5120 + 4 + 2 * 5120) = 2560 x 686084.
  EXPECT_EQ(estimate_activation_bytes(c, s), 2560LL * 686084);
  // The loss: chunks of 268435456 / (152064 * 4) = 441 tokens; 12 B x 152064 x 441 = 804722688 (767 MiB)
  // + d hidden 2 B x 5120 x 2560 = 26214400. (Unchunked, 16 B x 152064 x 2560 was 5.80 GiB.)
  EXPECT_EQ(estimate_logits_bytes(c, s), 804722688LL + 26214400LL);
}

// Runs estimate-cost on the seed with its config.json and an assumed 20M-token dataset.
nlohmann::json seed_estimate(const std::string& extra) {
  testing::TempDir dir;
  testing::write_text(dir.file("training_params.json"), kSeedParams);
  testing::write_text(dir.file("config.json"), kQwen32bConfig);
  auto result = testing::run_autotrain("estimate-cost --config training_params.json --model-config config.json "
                                       "--tokens 20000000 --json " + extra, dir.path().string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  return nlohmann::json::parse(result.output.substr(result.output.find('{')));
}

TEST(EstimateSeed, VerdictsForL4A10gA100H100) {
  const auto e = seed_estimate("--gpu L4 --gpu A10G --gpu A100-80GB --gpu H100-SXM");
  ASSERT_EQ(e["gpus"].size(), 4u);
  EXPECT_EQ(e["memory"]["base_weights"], 17554079744LL);
  EXPECT_EQ(e["data"]["blocks"], 39062);  // 20000000 / 512
  EXPECT_EQ(e["data"]["optimizer_steps_per_epoch"], 1954);  // ceil(ceil(39062 / 5) / 4) = ceil(7813 / 4)
  for (const auto& gpu : e["gpus"]) {
    const bool big = gpu["gpu"] == "A100-80GB" || gpu["gpu"] == "H100-SXM";
    EXPECT_EQ(gpu["fits"].get<bool>(), big) << gpu["gpu"];
    if (big) continue;
    // 24 GB cards: a smaller micro-batch with a larger accumulation is among the remedies, and it fits.
    bool smaller_batch = false;
    for (const auto& remedy : gpu["remedies"]) {
      if (remedy["gpu"] != gpu["gpu"]) continue;  // "a bigger GPU"
      EXPECT_LE(remedy["peak_bytes"].get<int64_t>(), 24000000000LL);
      smaller_batch |= remedy["change"].get<std::string>().rfind("batch_size", 0) == 0;
    }
    EXPECT_TRUE(smaller_batch) << gpu["gpu"];
  }
  EXPECT_FALSE(e["cheapest_fit"].is_null());
}

TEST(EstimateSeed, DataParallelDividesWallClockNotGpuHours) {
  const auto one = seed_estimate("--gpu H100-SXM");
  const auto four = seed_estimate("--gpu H100-SXM --gpus 4 --price 2");
  const auto& a = one["gpus"][0]["time"];
  const auto& b = four["gpus"][0]["time"];
  EXPECT_NEAR(b["hours"].get<double>(), a["hours"].get<double>() / 4, 1e-9);
  EXPECT_NEAR(b["gpu_hours"].get<double>(), a["gpu_hours"].get<double>(), 1e-9);
  EXPECT_NEAR(b["dollars"].get<double>(), a["gpu_hours"].get<double>() * 2, 1e-9);
  // Every data-parallel worker holds the whole model and its own micro-batch: memory per GPU is unchanged.
  EXPECT_EQ(four["memory"]["peak"], one["memory"]["peak"]);
  EXPECT_EQ(four["gpus"][0]["peak_bytes"], one["gpus"][0]["peak_bytes"]);
}

TEST(EstimateCli, MissingModelConfigIsOneLine) {
  testing::TempDir dir;
  testing::write_text(dir.file("training_params.json"), R"({"model": "/nonexistent/model", "peft": true})");
  auto result = testing::run_autotrain("estimate-cost --config training_params.json --tokens 1000",
                                       dir.path().string());
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("/nonexistent/model: no such folder"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("--model-config FILE"), std::string::npos) << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
}

TEST(EstimateCli, UnknownGpuListsTheKnownOnes) {
  testing::TempDir dir;
  testing::write_text(dir.file("training_params.json"), kSeedParams);
  testing::write_text(dir.file("config.json"), kQwen32bConfig);
  auto result = testing::run_autotrain(
      "estimate-cost --config training_params.json --model-config config.json --tokens 100000 --gpu V100",
      dir.path().string());
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("unknown GPU \"V100\"; known: T4, L4, A10G"), std::string::npos) << result.output;
}

TEST(EstimateCli, EmptyDatasetIsAnError) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir.path() / "data");
  testing::write_text(dir.file("data/train.jsonl"), "");
  const std::string model = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/llama";
  testing::write_text(dir.file("training_params.json"),
                      nlohmann::json({{"model", model}, {"data_path", "data"}, {"peft", true}}).dump());
  auto result = testing::run_autotrain("estimate-cost --config training_params.json --cache-dir cache",
                                       dir.path().string());
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("no texts"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace autotrain
