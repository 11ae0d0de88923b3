// The training loss from the final hidden states, a chunk of tokens at a time: transformers' ForCausalLMLoss
// with reduction sum (fp32 log-softmax of the compute dtype's logits, summed over the labels that are not
// -100) without ever holding the whole (tokens, vocab) logits. The unchunked composite keeps the fp32 logits
// for autograd and its backward holds several vocab-sized fp32 buffers per token at once: 5.8 GiB of a
// 28 GiB peak for a 152k vocabulary at 2560 tokens. Here the forward keeps only the hidden states, and the
// backward recomputes each chunk's logits (one more lm_head GEMM per token) so one chunk's buffers are alive.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace autotrain {

// Bytes of one chunk's fp32 logits when AUTOTRAIN_LOSS_CHUNK_MB does not say otherwise.
constexpr int64_t kDefaultLossChunkBytes = 256LL << 20;

// The chunk budget in bytes: AUTOTRAIN_LOSS_CHUNK_MB (MiB, may be fractional) if set, else 256 MiB. Read once;
// a value that is not a positive number throws Error.
int64_t lm_loss_chunk_bytes();

// Tokens per chunk for a vocabulary and a budget: max(1, budget / (vocab x 4 B)), so that one chunk's fp32
// logits fit the budget.
int64_t lm_loss_chunk_rows(int64_t vocab, int64_t budget_bytes);

// hidden (B,T,C) or (N,C) in the compute dtype, lm_head (V,C) frozen (the same dtype), shifted_labels (N = B*T)
// int64 on hidden's device, -100 = ignored -> the summed token cross entropy, an fp32 scalar. Gradient for
// hidden only. chunk_rows tokens at a time (all of them when they fit): the loss equals the unchunked
// composite up to the fp32 order of the chunks' sum, and d hidden is computed by the same ops row by row.
at::Tensor lm_head_loss_sum(const at::Tensor& hidden, const at::Tensor& lm_head, const at::Tensor& shifted_labels,
                            int64_t chunk_rows);

// The composite lm_head_loss_sum replaces, and the oracle it is held to: cross entropy (sum, ignore -100) of
// frozen_dense_linear(hidden, lm_head).to(fp32), differentiated by autograd.
at::Tensor lm_head_loss_sum_composite(const at::Tensor& hidden, const at::Tensor& lm_head,
                                      const at::Tensor& shifted_labels);

}  // namespace autotrain
