// AutoTrain's chat_template "tokenizer": a dataset column holding a conversation, a list of {"role", "content"}
// messages, becomes one text through the model tokenizer's own Jinja chat template, as
// tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False) writes it
// (autotrain-advanced trainers/clm/utils.py apply_chat_template); that text is then tokenized like any other.
#pragma once

#include <memory>
#include <string>

#include "autotrain/jinja.h"

namespace autotrain {

// A model folder's chat template as written (a string, a list of {"name", "template"}, or null for none), from where
// transformers and gguf-py look: tokenizer_config.json's "chat_template", else chat_template.jinja, else
// chat_template.json's; *origin names the file.
nlohmann::json chat_template_value(const std::string& model_dir, std::string* origin);

class ChatTemplate {
 public:
  // The template of a model folder: tokenizer_config.json's "chat_template" (a string, or a list of named
  // templates, of which "default"), else chat_template.jinja, else chat_template.json; with none, AutoTrain's
  // fallback, ChatML (<|im_start|>role\ncontent<|im_end|>\n). The special tokens (bos_token, eos_token,
  // unk_token, pad_token) come from tokenizer_config.json / special_tokens_map.json. Throws Error naming the file
  // for a template this renderer cannot read.
  static ChatTemplate load(const std::string& model_dir);
  ChatTemplate(const std::string& source, const std::string& name, OrderedJson special_tokens);

  // The text of one conversation. `messages` must be a list of objects, each with a string "role"; keys whose
  // value is null are dropped first, as transformers does. Throws Error for a malformed conversation or when
  // the template refuses it (raise_exception: "roles must alternate user/assistant/..."). `variables` (an object)
  // are more template variables, as apply_chat_template's keyword arguments (Qwen3's enable_thinking); they
  // override the special tokens, and may not be messages, add_generation_prompt, tools or documents.
  std::string apply(const OrderedJson& messages, bool add_generation_prompt = false,
                    const OrderedJson& variables = OrderedJson::object()) const;

  const std::string& source() const { return source_; }
  bool is_fallback() const { return fallback_; }

 private:
  std::string source_;
  std::shared_ptr<const JinjaTemplate> template_;
  OrderedJson special_tokens_;
  bool fallback_ = false;
};

// A conversation as a dataset cell holds it: a JSON list, or a string that is Python's str() of the list (a CSV
// written by pandas; AutoTrain reads it with ast.literal_eval) or a JSON text. Throws Error naming `where`.
OrderedJson conversation_of(const OrderedJson& cell, const std::string& where);

// Python literals as ast.literal_eval reads them: str (quotes '' "" and triple quotes, escapes, adjacent
// literals joined), int, float, True / False / None, list, tuple, dict. Throws Error saying where it stopped.
OrderedJson parse_python_literal(const std::string& text);

}  // namespace autotrain
