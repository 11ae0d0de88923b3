// The token cache encodes a dataset's texts in batches on several threads (src/token_cache.cpp); its file must hold
// the ids of each text, in file order, exactly as encoding them one by one does (each text's ids are checked against
// transformers in tokenizer_test.cpp and the trainer tests).
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../src/ordered_batches.h"
#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/token_cache.h"
#include "autotrain/tokenizer.h"
#include "test_util.h"

namespace autotrain {
namespace {

// `count` texts cut from tests/data/multilingual.txt, of 1 to 40 lines each (several batches of the encoder,
// which flushes every 4096 texts or 4 MB).
std::vector<std::string> corpus_texts(int count) {
  std::ifstream in(std::string(AUTOTRAIN_SOURCE_DIR) + "/tests/data/multilingual.txt");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  std::vector<std::string> texts;
  size_t at = 0;
  for (int i = 0; i < count; ++i) {
    std::string text;
    for (int k = 0; k <= (i * 7919) % 40; ++k) text += (k ? " " : "") + lines[at++ % lines.size()];
    texts.push_back(text);
  }
  return texts;
}

TEST(TokenCache, TextsEncodedOnSeveralThreadsKeepTheirOrder) {
  const std::vector<std::string> texts = corpus_texts(5000);
  testing::TempDir dir;
  {
    std::ofstream out(dir.file("train.jsonl"));
    for (const std::string& text : texts) out << nlohmann::json{{"text", text}}.dump() << "\n";
  }
  const int threads = at::get_num_threads();
  at::set_num_threads(4);
  for (const char* model : {"qwen2", "llama"}) {  // byte-level BPE (a shared word cache) and sentencepiece
    SCOPED_TRACE(model);
    TrainingParams params;
    params.model = std::string(AUTOTRAIN_FIXTURES_DIR) + "/models/" + model;
    params.data_path = dir.file("train.jsonl");
    params.text_column = "text";
    const auto tokenizer = Tokenizer::load(params.model);
    const std::string eos = tokenizer->decode({*tokenizer->eos_id()});
    std::vector<int64_t> want;
    for (const std::string& text : texts)
      for (int64_t id : tokenizer->encode(text + eos, true)) want.push_back(id);
    const TokenizedText tokens = tokenize_split(params, *tokenizer, "train", dir.file(std::string("cache-") + model));
    ASSERT_EQ(tokens.size(), static_cast<int64_t>(want.size()));
    for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(tokens.ids()[i], want[i]) << "token " << i;
  }
  at::set_num_threads(threads);
}

// The runner under the token cache and the preference pairs: results in the order added, and of two failing tasks
// the first in that order is the error, after every result before it.
TEST(TokenCache, BatchesHandOnResultsInOrderAndTheFirstErrorInOrder) {
  const int threads = at::get_num_threads();
  at::set_num_threads(4);
  std::vector<int64_t> seen;
  OrderedBatches<int64_t> batches([&](int64_t& value) { seen.push_back(value); });
  const std::string message = testing::error_message_of([&] {
    for (int64_t i = 0; i < 10000; ++i)
      batches.add([i] {
        if (i == 7001 || i == 5003) throw Error("task " + std::to_string(i));
        return i * i;
      }, 1);
    batches.flush();
  });
  at::set_num_threads(threads);
  // 4096 tasks ran in the first batch; the second (4096 to 8191), run when it is full, holds both failures.
  EXPECT_EQ(message, "task 5003");
  ASSERT_EQ(seen.size(), 5003u);
  for (int64_t i = 0; i < 5003; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)], i * i);
}

}  // namespace
}  // namespace autotrain
