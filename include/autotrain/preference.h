// Preference data and the DPO and ORPO losses (AutoTrain's `trainer: "dpo"` / `"orpo"`, which run TRL's DPOTrainer
// and ORPOTrainer): pairs of a prompt with a chosen and a rejected completion, tokenized as TRL 1.x prepares them,
// batched as its collators pad them; the sigmoid DPO loss of Rafailov et al. against the base model with the
// adapter disabled (PEFT's reference when no model_ref is given), and the odds-ratio loss of Hong et al.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autotrain/chat_template.h"
#include "autotrain/config.h"
#include "autotrain/tokenizer.h"

namespace autotrain {

// One pair's token ids: the prompt, and each completion as it follows the prompt. ORPO's tokenization may end the
// prompt one token earlier before one completion than before the other (a merge at the boundary): rejected_prompt
// is then the rejected sequence's own prompt (empty: `prompt`).
struct PreferencePair {
  std::vector<int64_t> prompt, chosen, rejected;
  std::vector<int64_t> rejected_prompt;
};

// The lengths AutoTrain's DPO / ORPO keys set. max_length (block_size) bounds prompt + completion (the end is cut,
// TRL's keep_start). As TRL did when AutoTrain passed the other two keys: max_completion_length keeps the first
// tokens of a longer completion; then, when the prompt with the longer completion passes max_length, the prompt
// keeps its last max_prompt_length tokens (and its bos, which TRL's keep_end cut dropped).
struct PreferenceLimits {
  int64_t max_length = 1024;
  std::optional<int64_t> max_prompt_length, max_completion_length;
};

// TRL's tokenization of a text pair: the eos token's text appended to a completion that does not end with it;
// prompt, prompt + chosen and prompt + rejected tokenized with the special tokens (bos); the completions start
// where the tokenized prompt stops being a prefix of both (a word split across the boundary merges into the
// completion), and the prompt is cut to that common prefix. Then the limits' prompt and completion cuts.
PreferencePair tokenize_preference(const Tokenizer& tokenizer, const std::string& prompt, const std::string& chosen,
                                   const std::string& rejected, const PreferenceLimits& limits);

// The ORPO trainer's tokenization (TRL's ORPOTrainer.tokenize_row): prompt and prompt + completion tokenized without
// special tokens; each completion starts after the tokenized prompt, one token earlier when the prompt's last token
// merged into it (so chosen and rejected may see prompts one token apart); the bos id prepended to a prompt lacking
// it and the eos id appended to a completion lacking it; then the limits. Throws Error when the two prompts differ
// by more than one token.
PreferencePair tokenize_orpo_preference(const Tokenizer& tokenizer, const std::string& prompt,
                                        const std::string& chosen, const std::string& rejected,
                                        const PreferenceLimits& limits);

// TRL's RewardTrainer's tokenization of a text pair (AutoTrain's trainer "reward"): each of prompt + chosen and
// prompt + rejected, the eos token's text appended when it does not end with it, tokenized with the special tokens
// (bos). The whole sequences go into `chosen` and `rejected`; `prompt` stays empty (a reward model scores the whole
// text). No cut: read_preference_split drops a pair whose either sequence passes max_length, as TRL filters them.
PreferencePair tokenize_reward_pair(const Tokenizer& tokenizer, const std::string& prompt, const std::string& chosen,
                                    const std::string& rejected);

// A conversational pair (chat_template "tokenizer"): message lists, as TRL's conversational preference datasets.
struct ConversationPair {
  OrderedJson prompt, chosen, rejected;
};

// TRL's implicit prompt (trl.extract_prompt) of a record with no prompt column: the messages chosen and rejected
// share from the start, the rest of each being its completion.
ConversationPair implicit_prompt(const OrderedJson& chosen, const OrderedJson& rejected);

// TRL's tokenization of a conversational pair: the chat template renders the prompt with the generation prompt,
// and prompt + chosen and prompt + rejected without it; each is tokenized without adding special tokens (the
// template writes them) and no eos is appended; then the common-prefix split and the limits as above.
PreferencePair tokenize_preference(const Tokenizer& tokenizer, const ChatTemplate& chat, const ConversationPair& pair,
                                   const PreferenceLimits& limits);

// The pairs of a split: the columns prompt_text_column, text_column (chosen) and rejected_text_column of the file
// resolve_split_files finds, tokenized by tokenize_preference (tokenize_orpo_preference for trainer orpo). With
// chat_template "tokenizer" the columns hold conversations rendered by the model's template; prompt_text_column may
// then be null (the implicit prompt). A pair whose prompt alone fills max_length would keep no completion token, so it
// is dropped (as TRL drops it) with a warning counting them. Throws Error naming the file when no pair is left.
// Trainer reward: tokenize_reward_pair, prompt_text_column optional (prepended when given); with chat_template
// "tokenizer" AutoTrain renders each conversation (the prompt's messages first when given) to text with the model's
// template, and TRL then tokenizes that text as above. A pair is dropped when either sequence passes max_length.
std::vector<PreferencePair> read_preference_split(const TrainingParams& params, const Tokenizer& tokenizer,
                                                  const std::string& split, const PreferenceLimits& limits);

// A micro-batch as TRL's preference collator makes it: the b chosen sequences (prompt + chosen) then the b rejected
// ones, each cut to max_length, right-padded with pad_id to the longest; completion_mask is 1 on completion tokens.
struct PreferenceBatch {
  at::Tensor input_ids;        // (2b, L) int64
  at::Tensor completion_mask;  // (2b, L) bool
  at::Tensor attention_mask;   // (2b, L) bool, true on every token that is not padding
  int64_t tokens = 0;          // of the sequences, padding excluded
};
PreferenceBatch preference_batch(const std::vector<PreferencePair>& pairs, const std::vector<int64_t>& indices,
                                 int64_t max_length, int64_t pad_id);

// A micro-batch's preference loss and the numbers TRL logs for it (rewards/accuracies, rewards/margins, ...).
struct PreferenceLoss {
  at::Tensor loss;  // fp32 scalar, differentiable through the policy's log-probabilities
  std::vector<std::pair<std::string, double>> metrics;
  double accuracy = 0, margin = 0;  // rewards/accuracies and rewards/margins, for the evaluation
};

// The sigmoid DPO loss from the summed completion log-probabilities (b,) of the policy and the reference: mean over
// the pairs of -log sigmoid(beta ((pi_c - ref_c) - (pi_r - ref_r))); logged: rewards/chosen, rewards/rejected,
// rewards/accuracies, rewards/margins (rewards: beta x log-ratio), logps/chosen, logps/rejected.
PreferenceLoss dpo_loss(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected,
                        const at::Tensor& reference_chosen, const at::Tensor& reference_rejected, double beta);

// The ORPO loss (Hong et al., TRL's ORPOTrainer) from the policy alone: the completions' mean log-probabilities per
// token c, r (b,) give log odds (c - r) - (log(1 - e^c) - log(1 - e^r)); the loss is nll - mean(beta log sigmoid(log
// odds)), nll the mean token loss of the chosen sequences, prompt included. Logged: rewards (beta x c, beta x r) as
// above, logps/chosen, logps/rejected (the means per token), nll_loss, log_odds_ratio, log_odds_chosen.
PreferenceLoss orpo_loss(const at::Tensor& chosen_mean_logps, const at::Tensor& rejected_mean_logps,
                         const at::Tensor& nll, double beta);

// The reward model's loss (TRL's RewardTrainer, no margin column, center_rewards_coefficient unset): the mean over
// the pairs of -log sigmoid(r_chosen - r_rejected), from the score head's rewards (b,). Logged as TRL: min_reward,
// mean_reward, max_reward (over both halves), accuracy (share of pairs with r_chosen > r_rejected), margin.
PreferenceLoss reward_loss(const at::Tensor& chosen_rewards, const at::Tensor& rejected_rewards);

}  // namespace autotrain
