// autotrain generate --model DIR [--adapter DIR] [--quantization int4] [--chat [--system TEXT]] --prompt TEXT
//                    --max-new-tokens N
#include <chrono>
#include <cstdio>
#include <iostream>

#include "autotrain/adapter.h"
#include "autotrain/chat_template.h"
#include "autotrain/cuda_ops.h"
#include "autotrain/device.h"
#include "autotrain/error.h"
#include "autotrain/estimate.h"
#include "autotrain/generation.h"
#include "autotrain/gguf.h"
#include "autotrain/hub_cache.h"
#include "autotrain/logging.h"
#include "autotrain/merge.h"
#include "autotrain/model.h"
#include "autotrain/progress.h"
#include "autotrain/tokenizer.h"
#include "commands.h"

namespace autotrain::cli {

namespace {
struct GenerateOptions {
  std::string model_dir, adapter_dir, prompt, system, chat_template_kwargs, dtype = "auto", device = "auto",
      quantization = "none", gguf_type, imatrix;
  int64_t max_new_tokens = 64;
  double temperature = 0, top_p = 1.0;
  uint64_t seed = 42;
  bool no_special_tokens = false, ignore_eos = false, chat = false;
};

// The prompt's ids: the text as is (with the bos token unless --no-special-tokens), or with --chat a user message
// (after a --system one) written by the model's chat template with the assistant's turn opened, tokenized without
// adding special tokens, as transformers' apply_chat_template(..., add_generation_prompt=True) does.
std::vector<int64_t> prompt_ids_of(const GenerateOptions& o, const Tokenizer& tokenizer) {
  if (!o.chat) return tokenizer.encode(o.prompt, !o.no_special_tokens);
  OrderedJson messages = OrderedJson::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  messages.push_back({{"role", "user"}, {"content", o.prompt}});
  OrderedJson variables = OrderedJson::object();
  if (!o.chat_template_kwargs.empty()) {
    try {
      variables = OrderedJson::parse(o.chat_template_kwargs);
    } catch (const OrderedJson::exception& e) {
      throw Error(std::string("generate: --chat-template-kwargs is not JSON (") + e.what() + ")", kExitUsage);
    }
    if (!variables.is_object())
      throw Error("generate: --chat-template-kwargs must be a JSON object, e.g. '{\"enable_thinking\": false}'",
                  kExitUsage);
  }
  return tokenizer.encode(ChatTemplate::load(o.model_dir).apply(messages, /*add_generation_prompt=*/true, variables),
                          false);
}
}  // namespace

Command add_generate_command(CLI::App& parent) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* app = parent.add_subcommand("generate", "Continue a prompt with a local model, optionally with a LoRA adapter");
  app->add_option("-m,--model", o->model_dir,
                  "Hugging Face model folder (config.json, safetensors, tokenizer), or a Hub id in the local HF cache")
      ->required();
  app->add_option("-a,--adapter", o->adapter_dir, "PEFT adapter folder (adapter_config.json + adapter_model.safetensors)")
      ->check(CLI::ExistingDirectory);
  app->add_option("-p,--prompt", o->prompt, "The text to continue")->required();
  app->add_option("-n,--max-new-tokens", o->max_new_tokens, "Tokens to generate at most")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app->add_option("-t,--temperature", o->temperature, "0 = greedy; above 0 samples")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  app->add_option("--top-p", o->top_p, "Nucleus sampling: keep the most likely tokens up to this probability")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app->add_option("--seed", o->seed, "Seed of the sampler")->capture_default_str();
  app->add_option("--dtype", o->dtype,
                  "Weights and compute dtype; auto: fp32 on the CPU, on a GPU the checkpoint's fp16 / bf16 (else bf16; "
                  "fp16 before Ampere)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "fp16", "bf16"}));
  add_device_option(*app, o->device);
  app->add_option("--quantization", o->quantization,
                  "The 7 projections' base weights as training's quantization key has them: int4 (NF4, the base "
                  "a QLoRA adapter was trained on), int8 or none")
      ->capture_default_str()
      ->check(CLI::IsMember({"int4", "int8", "none"}));
  app->add_option("--gguf-type", o->gguf_type,
                  "The weights as export-gguf's TYPE stores them (q4_K_M, q8_0, ...: llama.cpp's dequantized values, "
                  "in place of --quantization): hear what the GGUF will say before exporting it")
      ->check(CLI::IsMember(gguf_type_names(), CLI::ignore_case));
  app->add_option("--imatrix", o->imatrix,
                  "With --gguf-type: the importance matrix export-gguf --imatrix would quantize with")
      ->check(CLI::ExistingFile)
      ->needs("--gguf-type");
  app->add_flag("--no-special-tokens", o->no_special_tokens, "Do not add the tokenizer's bos token to the prompt");
  app->add_flag("--chat", o->chat,
                "Send the prompt as a user message through the model's chat template (tokenizer_config.json's "
                "chat_template; ChatML without one), as for a model trained with chat_template \"tokenizer\"");
  app->add_option("--system", o->system, "With --chat: a system message before the prompt");
  app->add_option("--chat-template-kwargs", o->chat_template_kwargs,
                  "With --chat: a JSON object of more template variables, e.g. '{\"enable_thinking\": false}' (Qwen3)");
  app->add_flag("--ignore-eos", o->ignore_eos,
                "Go on past the end-of-sequence token, to --max-new-tokens (for timing a fixed length)");
  app->footer("Example:\n  autotrain generate --model build/fixtures/models/llama --adapter example-run "
              "--prompt \"The red fox\" --max-new-tokens 32");
  auto run = [o] {
    if (!o->system.empty() && !o->chat) throw Error("generate: --system needs --chat", kExitUsage);
    if (!o->chat_template_kwargs.empty() && !o->chat)
      throw Error("generate: --chat-template-kwargs needs --chat", kExitUsage);
    o->model_dir = resolve_model_folder(o->model_dir);
    auto tokenizer = Tokenizer::load(o->model_dir);
    // Before the model is loaded: a template that refuses the prompt, or bad --chat-template-kwargs, is said at once.
    std::vector<int64_t> prompt_ids = prompt_ids_of(*o, *tokenizer);
    if (prompt_ids.empty()) throw Error("generate: the prompt has no tokens; give a non-empty --prompt", kExitUsage);
    ModelOptions options;
    options.device = select_device(o->device);
    options.dtype = generation_dtype(o->dtype, options.device, load_model_config(o->model_dir).dtype,
                                     bf16_native(options.device));
    options.quantization = parse_base_quantization(o->quantization);
    if (!o->gguf_type.empty()) {
      if (options.quantization != BaseQuantization::none)
        throw Error("generate: --gguf-type and --quantization " + o->quantization + " together; the GGUF type is the "
                    "quantization: give one", kExitUsage);
      options.weight_transform = gguf_round_trip(o->model_dir, parse_gguf_type(o->gguf_type), o->imatrix);
    }
    options.gemv_tiles = gemv_tiles();  // unless AUTOTRAIN_GEMV_TILES=0 (src/cuda_ops.h)
    // Said only for a GPU: the CPU is what generate always did, and its stderr stays as it was.
    if (options.device.is_cuda())
      log::info("device: " + describe_device(options.device) + ", " + c10::toString(options.dtype) +
                (o->dtype == "auto" ? " (--dtype auto)" : ""));
    std::optional<AdapterConfig> adapter;
    if (!o->adapter_dir.empty()) {
      adapter = load_adapter_config(o->adapter_dir);
      if (adapter->is_reward_model())
        throw Error(o->adapter_dir + "/adapter_config.json: a reward model's adapter (task_type SEQ_CLS) scores texts "
                    "and does not generate; score pairs with `autotrain eval --trainer reward`");
      options.lora_target_modules = adapter->target_modules;
      options.lora = adapter->lora;
    }
    CausalLM model(o->model_dir, options);
    if (adapter) load_adapter_weights(o->adapter_dir, model.lora_parameters());
    GenerationOptions generation;
    generation.max_new_tokens = o->max_new_tokens;
    generation.temperature = o->temperature;
    generation.top_p = o->top_p;
    generation.seed = o->seed;
    if (!o->ignore_eos) {
      for (int64_t id : model.config().eos_token_ids) generation.stop_token_ids.push_back(id);
      for (int64_t id : generation_config_eos_ids(o->model_dir)) generation.stop_token_ids.push_back(id);
      if (tokenizer->eos_id()) generation.stop_token_ids.push_back(*tokenizer->eos_id());
    }
    // Streams the text: the decoded prompt + tokens so far, minus what was already printed, so a leading
    // space (which sentencepiece decodes only inside a sequence) and multi-byte characters split across
    // tokens come out right; a suffix ending in U+FFFD waits for the rest of its character.
    std::vector<int64_t> all_ids = prompt_ids;
    std::string printed = tokenizer->decode(prompt_ids, true);
    std::cout << printed << std::flush;
    auto print_new_text = [&](bool final) {
      const std::string text = tokenizer->decode(all_ids, true);
      if (text.size() <= printed.size() || text.compare(0, printed.size(), printed) != 0) return;
      if (!final && text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;
      std::cout << text.substr(printed.size()) << std::flush;
      printed = text;
    };
    // The speed, on stderr after the text: the first token's latency (the prompt's forward), then the rate of the
    // others (one forward of one position each, a GEMV per projection on a GPU with an int4 base).
    using Clock = std::chrono::steady_clock;
    const Clock::time_point start = Clock::now();
    Clock::time_point first;
    generate_tokens(model, prompt_ids, generation, [&](int64_t id) {
      if (all_ids.size() == prompt_ids.size()) first = Clock::now();
      all_ids.push_back(id);
      print_new_text(false);
    });
    const Clock::time_point end = Clock::now();
    print_new_text(true);
    std::cout << std::endl;
    const int64_t generated = static_cast<int64_t>(all_ids.size() - prompt_ids.size());
    const double first_ms = std::chrono::duration<double, std::milli>(first - start).count();
    const double rest_seconds = std::chrono::duration<double>(end - first).count();
    char line[256];
    std::snprintf(line, sizeof line, "generate: %ld new tokens; the first after %.1f ms (a prompt of %zu tokens)",
                  static_cast<long>(generated), first_ms, prompt_ids.size());
    std::string summary = line;
    if (generated > 1 && rest_seconds > 0) {
      std::snprintf(line, sizeof line, ", then %.2f tokens/s", static_cast<double>(generated - 1) / rest_seconds);
      summary += line;
    }
    summary += options.device.is_cuda()
                   ? "; GPU memory in use " + format_bytes(gpu_memory_in_use_bytes(options.device))
                   : "; resident memory " + format_bytes(resident_memory_bytes());
    log::info(summary);
  };
  return {app, run};
}

}  // namespace autotrain::cli
