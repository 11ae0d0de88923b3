#include "autotrain/preference.h"

#include <algorithm>

#include "autotrain/chat_template.h"
#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/logging.h"
#include "autotrain/text_util.h"
#include "ordered_batches.h"

namespace autotrain {
namespace {

// What a record of conversations counts for in a batch of pairs to tokenize (its texts are not measured).
constexpr size_t kConversationBytes = 1024;

size_t common_prefix_length(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const auto [end, other] =
      std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(std::min(a.size(), b.size())), b.begin());
  return static_cast<size_t>(end - a.begin());
}

std::vector<int64_t> tail(const std::vector<int64_t>& ids, size_t from) {
  return std::vector<int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(from), ids.end());
}

// The eos token's text, and a completion with it appended unless it ends with it (TRL's preference trainers).
std::string eos_text(const Tokenizer& tokenizer) {
  return tokenizer.eos_id() ? tokenizer.decode({*tokenizer.eos_id()}) : "";
}
std::string with_eos(const std::string& completion, const std::string& eos) {
  return eos.empty() || ends_with(completion, eos) ? completion : completion + eos;
}

// The prompt's last `keep` tokens, after its bos when it starts with one.
std::vector<int64_t> prompt_end(const std::vector<int64_t>& prompt, size_t keep, const Tokenizer& tokenizer) {
  const bool bos = tokenizer.bos_id() && !prompt.empty() && prompt.front() == *tokenizer.bos_id();
  if (prompt.size() <= keep) return prompt;
  std::vector<int64_t> cut = tail(prompt, prompt.size() - keep + (bos ? 1 : 0));
  if (bos) cut.insert(cut.begin(), *tokenizer.bos_id());
  return cut;
}

// AutoTrain's cuts (autotrain/preference.h): completions to max_completion_length; then, when the prompt with the
// longer completion passes max_length, the prompt to its end of max_prompt_length tokens.
void apply_limits(PreferencePair& pair, const Tokenizer& tokenizer, const PreferenceLimits& limits) {
  if (const auto limit = limits.max_completion_length) {
    for (auto* completion : {&pair.chosen, &pair.rejected})
      if (static_cast<int64_t>(completion->size()) > *limit) completion->resize(static_cast<size_t>(*limit));
  }
  const size_t longer = std::max(pair.chosen.size(), pair.rejected.size());
  if (!limits.max_prompt_length || static_cast<int64_t>(pair.prompt.size() + longer) <= limits.max_length) return;
  const auto keep = static_cast<size_t>(*limits.max_prompt_length);
  pair.prompt = prompt_end(pair.prompt, keep, tokenizer);
  if (!pair.rejected_prompt.empty()) pair.rejected_prompt = prompt_end(pair.rejected_prompt, keep, tokenizer);
}

// TRL's split of a pair: the completions start where the tokenized prompt stops being a prefix of both tokenized
// prompt + completion; then the limits.
PreferencePair split_pair(const Tokenizer& tokenizer, const std::vector<int64_t>& prompt_ids,
                          const std::vector<int64_t>& prompt_chosen, const std::vector<int64_t>& prompt_rejected,
                          const PreferenceLimits& limits) {
  const size_t prompt_length =
      std::min(common_prefix_length(prompt_ids, prompt_chosen), common_prefix_length(prompt_ids, prompt_rejected));
  PreferencePair pair{
      std::vector<int64_t>(prompt_ids.begin(), prompt_ids.begin() + static_cast<std::ptrdiff_t>(prompt_length)),
      tail(prompt_chosen, prompt_length),
      tail(prompt_rejected, prompt_length),
      {}};
  apply_limits(pair, tokenizer, limits);
  return pair;
}

OrderedJson concatenated(OrderedJson first, const OrderedJson& second) {
  for (const auto& message : second) first.push_back(message);
  return first;
}

}  // namespace

PreferencePair tokenize_preference(const Tokenizer& tokenizer, const std::string& prompt, const std::string& chosen,
                                   const std::string& rejected, const PreferenceLimits& limits) {
  const std::string eos = eos_text(tokenizer);
  return split_pair(tokenizer, tokenizer.encode(prompt, true), tokenizer.encode(prompt + with_eos(chosen, eos), true),
                    tokenizer.encode(prompt + with_eos(rejected, eos), true), limits);
}

PreferencePair tokenize_reward_pair(const Tokenizer& tokenizer, const std::string& prompt, const std::string& chosen,
                                    const std::string& rejected) {
  const std::string eos = eos_text(tokenizer);  // TRL appends it before it prepends the prompt
  return PreferencePair{{},
                        tokenizer.encode(prompt + with_eos(chosen, eos), true),
                        tokenizer.encode(prompt + with_eos(rejected, eos), true),
                        {}};
}

PreferencePair tokenize_orpo_preference(const Tokenizer& tokenizer, const std::string& prompt,
                                        const std::string& chosen, const std::string& rejected,
                                        const PreferenceLimits& limits) {
  const std::vector<int64_t> prompt_ids = tokenizer.encode(prompt, false);
  // TRL's build_tokenized_answer: the answer starts after the tokenized prompt, one token earlier when the prompt's
  // last token merged with the answer's first.
  auto answer = [&](const std::string& completion) {
    const std::vector<int64_t> full = tokenizer.encode(prompt + completion, false);
    size_t start = std::min(prompt_ids.size(), full.size());
    if (!std::equal(prompt_ids.begin(), prompt_ids.end(), full.begin(),
                    full.begin() + static_cast<std::ptrdiff_t>(start)) ||
        start < prompt_ids.size())
      start = prompt_ids.empty() ? 0 : std::min(prompt_ids.size() - 1, full.size());
    return std::make_pair(std::vector<int64_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(start)),
                          tail(full, start));
  };
  auto [chosen_prompt, chosen_ids] = answer(chosen);
  auto [rejected_prompt, rejected_ids] = answer(rejected);
  size_t differing = 0;
  for (size_t i = 0; i < std::min(chosen_prompt.size(), rejected_prompt.size()); ++i)
    differing += chosen_prompt[i] != rejected_prompt[i] ? 1 : 0;
  const size_t lengths_differ = chosen_prompt.size() > rejected_prompt.size()
                                    ? chosen_prompt.size() - rejected_prompt.size()
                                    : rejected_prompt.size() - chosen_prompt.size();
  if (differing > 1 || lengths_differ > 1)
    throw Error(
        "the prompt tokenizes differently before the chosen and the rejected completion (by more than the "
        "last token, which may merge with the completion's first)");
  if (const auto bos = tokenizer.bos_id()) {  // add_bos_token_if_needed
    for (auto* ids : {&chosen_prompt, &rejected_prompt})
      if (ids->empty() || ids->front() != *bos) ids->insert(ids->begin(), *bos);
  }
  if (const auto eos = tokenizer.eos_id()) {  // add_eos_token_if_needed
    for (auto* ids : {&chosen_ids, &rejected_ids})
      if (ids->empty() || ids->back() != *eos) ids->push_back(*eos);
  }
  PreferencePair pair{std::move(chosen_prompt), std::move(chosen_ids), std::move(rejected_ids), {}};
  if (rejected_prompt != pair.prompt) pair.rejected_prompt = std::move(rejected_prompt);
  apply_limits(pair, tokenizer, limits);
  return pair;
}

ConversationPair implicit_prompt(const OrderedJson& chosen, const OrderedJson& rejected) {
  const size_t shared = std::min(chosen.size(), rejected.size());
  size_t split = 0;
  while (split < shared && chosen[split] == rejected[split]) ++split;
  if (split == shared && shared > 0) --split;  // Python's loop variable after a loop that never broke
  ConversationPair pair{OrderedJson::array(), OrderedJson::array(), OrderedJson::array()};
  for (size_t i = 0; i < chosen.size(); ++i) (i < split ? pair.prompt : pair.chosen).push_back(chosen[i]);
  for (size_t i = split; i < rejected.size(); ++i) pair.rejected.push_back(rejected[i]);
  return pair;
}

PreferencePair tokenize_preference(const Tokenizer& tokenizer, const ChatTemplate& chat, const ConversationPair& pair,
                                   const PreferenceLimits& limits) {
  auto ids = [&](const OrderedJson& messages, bool add_generation_prompt) {
    return tokenizer.encode(chat.apply(messages, add_generation_prompt), false);
  };
  return split_pair(tokenizer, ids(pair.prompt, true), ids(concatenated(pair.prompt, pair.chosen), false),
                    ids(concatenated(pair.prompt, pair.rejected), false), limits);
}

std::vector<PreferencePair> read_preference_split(const TrainingParams& params, const Tokenizer& tokenizer,
                                                  const std::string& split, const PreferenceLimits& limits) {
  const bool chat = params.chat_template == "tokenizer";
  const bool reward = params.trainer == "reward";
  if (!params.rejected_text_column || (!chat && !reward && !params.prompt_text_column))
    throw Error("trainer \"" + params.trainer + "\" reads " +
                (reward ? "a chosen and a rejected text per record: set \"rejected_text_column\""
                        : "a prompt, a chosen and a rejected text per record: set \"prompt_text_column\" and "
                          "\"rejected_text_column\"") +
                " (the chosen text is \"text_column\")");
  const DataFiles files = resolve_split_files(params.data_path, split);
  std::vector<DataColumn> columns = {{params.text_column, "text_column"},
                                     {*params.rejected_text_column, "rejected_text_column"}};
  if (params.prompt_text_column) columns.push_back({*params.prompt_text_column, "prompt_text_column"});
  std::vector<PreferencePair> pairs;
  int64_t too_long = 0;
  auto keep = [&](PreferencePair pair) {
    // A reward pair is dropped when either whole sequence is too long (TRL's filter); a DPO / ORPO pair when its
    // prompt alone fills max_length (the rest is cut by the collator).
    const size_t prompt = std::max(pair.prompt.size(), pair.rejected_prompt.size());
    const size_t longest = std::max(pair.chosen.size(), pair.rejected.size());
    if (reward ? static_cast<int64_t>(longest) > limits.max_length : static_cast<int64_t>(prompt) >= limits.max_length)
      ++too_long;
    else
      pairs.push_back(std::move(pair));
  };
  // Pairs are tokenized on every core, in batches, and kept in file order (ordered_batches.h).
  OrderedBatches<PreferencePair> batches([&](PreferencePair& pair) { keep(std::move(pair)); });
  if (chat) {
    const ChatTemplate chat_template = ChatTemplate::load(params.model);
    for_each_record_cells(files, columns, [&](const CellRow& cells, const std::string& where) {
      batches.add([&, cells, where] {
        auto messages = [&](size_t c) {
          return conversation_of(cells[c], where + ": column \"" + columns[c].name + "\"");
        };
        if (reward) {  // AutoTrain renders each conversation to text; TRL tokenizes that text
          auto rendered = [&](size_t c) {
            OrderedJson conversation = params.prompt_text_column ? messages(2) : OrderedJson::array();
            for (const auto& message : messages(c)) conversation.push_back(message);
            try {
              return chat_template.apply(conversation, false);
            } catch (const Error& e) {
              throw Error(where + ": " + e.what());
            }
          };
          return tokenize_reward_pair(tokenizer, "", rendered(0), rendered(1));
        }
        ConversationPair conversation;
        if (params.prompt_text_column) {
          if (cells[2].is_string() && !cells[2].get_ref<const std::string&>().empty() &&
              cells[2].get_ref<const std::string&>().front() != '[')
            throw Error(where + ": column \"" + columns[2].name +
                        "\" is a text, and chosen / rejected are conversations: " +
                        "give the prompt as a list of messages, or set prompt_text_column to null (the prompt is " +
                        "then the turns chosen and rejected share)");
          conversation = ConversationPair{messages(2), messages(0), messages(1)};
        } else {
          conversation = implicit_prompt(messages(0), messages(1));
        }
        try {
          return tokenize_preference(tokenizer, chat_template, conversation, limits);
        } catch (const Error& e) {
          throw Error(where + ": " + e.what());
        }
      }, kConversationBytes);
    });
    batches.flush();  // while chat_template lives
  } else {
    for_each_record(files, columns, [&](const Row& row) {
      size_t bytes = 0;
      for (const std::string& cell : row) bytes += cell.size();
      batches.add([&, row] {
        if (reward)
          return tokenize_reward_pair(tokenizer, params.prompt_text_column ? row[2] : std::string(), row[0], row[1]);
        if (params.trainer == "orpo") return tokenize_orpo_preference(tokenizer, row[2], row[0], row[1], limits);
        return tokenize_preference(tokenizer, row[2], row[0], row[1], limits);
      }, bytes);
    });
    batches.flush();
  }
  const std::string source = files_label(files);
  if (too_long > 0 && reward)
    log::warn(log::cat(source, ": ", too_long, " pair(s) dropped: the chosen or the rejected text is longer than ",
                       "block_size ", limits.max_length, " tokens (TRL's RewardTrainer drops them too)"));
  else if (too_long > 0)
    log::warn(log::cat(source, ": ", too_long, " pair(s) dropped: the prompt alone fills block_size ",
                       limits.max_length, ", leaving no completion token"));
  if (pairs.empty() && reward)
    throw Error(source + ": every pair has a text longer than max_length (block_size " +
                std::to_string(limits.max_length) + " tokens), so none is left to train on; raise block_size");
  if (pairs.empty())
    throw Error(source + ": every prompt fills max_length (block_size " + std::to_string(limits.max_length) +
                ") by itself, so no pair has a completion token to train on; raise block_size or lower "
                "max_prompt_length");
  log::info(log::cat(source, ": ", pairs.size(), " preference pairs"));
  return pairs;
}

PreferenceBatch preference_batch(const std::vector<PreferencePair>& pairs, const std::vector<int64_t>& indices,
                                 int64_t max_length, int64_t pad_id) {
  std::vector<std::vector<int64_t>> rows;
  std::vector<size_t> prompt_lengths;
  for (const bool chosen : {true, false}) {
    for (const int64_t index : indices) {
      const PreferencePair& pair = pairs.at(static_cast<size_t>(index));
      const auto& prompt = chosen || pair.rejected_prompt.empty() ? pair.prompt : pair.rejected_prompt;
      std::vector<int64_t> row = prompt;
      const auto& completion = chosen ? pair.chosen : pair.rejected;
      row.insert(row.end(), completion.begin(), completion.end());
      if (static_cast<int64_t>(row.size()) > max_length) row.resize(static_cast<size_t>(max_length));
      prompt_lengths.push_back(prompt.size());
      rows.push_back(std::move(row));
    }
  }
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.size());
  const auto n = static_cast<int64_t>(rows.size());
  PreferenceBatch batch;
  batch.input_ids = at::full({n, static_cast<int64_t>(width)}, pad_id, at::kLong);
  batch.completion_mask = at::zeros({n, static_cast<int64_t>(width)}, at::kBool);
  batch.attention_mask = at::zeros({n, static_cast<int64_t>(width)}, at::kBool);
  auto ids = batch.input_ids.accessor<int64_t, 2>();
  auto mask = batch.completion_mask.accessor<bool, 2>();
  auto attended = batch.attention_mask.accessor<bool, 2>();
  for (int64_t r = 0; r < n; ++r) {
    const auto& row = rows[static_cast<size_t>(r)];
    for (size_t t = 0; t < row.size(); ++t) {
      ids[r][static_cast<int64_t>(t)] = row[t];
      mask[r][static_cast<int64_t>(t)] = t >= prompt_lengths[static_cast<size_t>(r)];
      attended[r][static_cast<int64_t>(t)] = true;
    }
    batch.tokens += static_cast<int64_t>(row.size());
  }
  return batch;
}

namespace {

// What both losses log of their rewards (b,).
void add_reward_metrics(PreferenceLoss& out, const at::Tensor& chosen_rewards, const at::Tensor& rejected_rewards) {
  out.accuracy = chosen_rewards.gt(rejected_rewards).to(at::kFloat).mean().item<double>();
  out.margin = (chosen_rewards - rejected_rewards).mean().item<double>();
  out.metrics.emplace_back("rewards/chosen", chosen_rewards.mean().item<double>());
  out.metrics.emplace_back("rewards/rejected", rejected_rewards.mean().item<double>());
  out.metrics.emplace_back("rewards/accuracies", out.accuracy);
  out.metrics.emplace_back("rewards/margins", out.margin);
}

// log(1 - e^x) for x < 0, as TRL's log1mexp: log1p(-e^x) below -ln 2, log(-expm1(x)) above.
at::Tensor log1mexp(const at::Tensor& x) {
  return at::where(x < -0.6931471805599453, at::log1p(-at::exp(x)), at::log(-at::expm1(x)));
}

}  // namespace

PreferenceLoss dpo_loss(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                        const at::Tensor& reference_chosen, const at::Tensor& reference_rejected, double beta) {
  const at::Tensor chosen_ratio = policy_chosen - reference_chosen;
  const at::Tensor rejected_ratio = policy_rejected - reference_rejected;
  PreferenceLoss out;
  out.loss = -at::log_sigmoid(beta * (chosen_ratio - rejected_ratio)).mean();
  at::NoGradGuard no_grad;
  add_reward_metrics(out, beta * chosen_ratio.detach(), beta * rejected_ratio.detach());
  out.metrics.emplace_back("logps/chosen", policy_chosen.detach().mean().item<double>());
  out.metrics.emplace_back("logps/rejected", policy_rejected.detach().mean().item<double>());
  return out;
}

PreferenceLoss orpo_loss(const at::Tensor& chosen_mean_logps, const at::Tensor& rejected_mean_logps,
                         const at::Tensor& nll, double beta) {
  const at::Tensor log_odds =
      (chosen_mean_logps - rejected_mean_logps) - (log1mexp(chosen_mean_logps) - log1mexp(rejected_mean_logps));
  const at::Tensor ratio = at::log_sigmoid(log_odds);
  PreferenceLoss out;
  out.loss = nll - (beta * ratio).mean();
  at::NoGradGuard no_grad;
  add_reward_metrics(out, beta * chosen_mean_logps.detach(), beta * rejected_mean_logps.detach());
  out.metrics.emplace_back("logps/chosen", chosen_mean_logps.detach().mean().item<double>());
  out.metrics.emplace_back("logps/rejected", rejected_mean_logps.detach().mean().item<double>());
  out.metrics.emplace_back("nll_loss", nll.detach().item<double>());
  out.metrics.emplace_back("log_odds_ratio", ratio.detach().mean().item<double>());
  out.metrics.emplace_back("log_odds_chosen", log_odds.detach().mean().item<double>());
  return out;
}

PreferenceLoss reward_loss(const at::Tensor& chosen_rewards, const at::Tensor& rejected_rewards) {
  PreferenceLoss out;
  out.loss = -at::log_sigmoid(chosen_rewards - rejected_rewards).mean();
  at::NoGradGuard no_grad;
  const at::Tensor chosen = chosen_rewards.detach(), rejected = rejected_rewards.detach();
  const at::Tensor all = at::cat({chosen, rejected});
  out.accuracy = chosen.gt(rejected).to(at::kFloat).mean().item<double>();
  out.margin = (chosen - rejected).mean().item<double>();
  out.metrics.emplace_back("min_reward", all.min().item<double>());
  out.metrics.emplace_back("mean_reward", all.mean().item<double>());
  out.metrics.emplace_back("max_reward", all.max().item<double>());
  out.metrics.emplace_back("accuracy", out.accuracy);
  out.metrics.emplace_back("margin", out.margin);
  return out;
}

}  // namespace autotrain
