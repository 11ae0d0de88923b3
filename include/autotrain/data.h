// The training texts: AutoTrain's dataset layouts read as a stream of strings, and the packing of their
// token ids into fixed-size blocks (AutoTrain's default trainer: concatenate, cut, drop the remainder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace autotrain {

// data_path is a file (.jsonl, .json, .csv, .txt) or a folder holding `<split>.jsonl|.json|.csv|.txt`
// (AutoTrain's layout: data/train.csv). Throws Error naming what was looked for.
std::string resolve_split_file(const std::string& data_path, const std::string& split);

// The longest record read: a line of .jsonl / .txt, a CSV record, a text of .json. Each text is tokenized
// whole, and one of 100 MB would take ~15 GB with a sentencepiece BPE (and minutes); a record this long is
// nearly always a file without newlines or a quote that is never closed, so it is refused, naming the line.
constexpr size_t kMaxRecordBytes = 16u << 20;

class ChatTemplate;

// Calls `visit` with the text_column of every record, in file order. JSONL: one object per line; JSON: an
// array of objects; CSV: RFC 4180 with a header row (quoted fields may hold commas, quotes and newlines);
// TXT: one text per line. Throws Error naming the file and line on a missing column (listing the
// columns found), a non-string value, malformed JSON/CSV, bytes that are not UTF-8 or a record longer than
// kMaxRecordBytes. Returns the count.
// With `chat`, the column holds conversations (a JSON list of messages, or a string holding one: see
// conversation_of) and `visit` sees each rendered by the template; a conversation the template refuses is an
// Error naming the file and line.
int64_t for_each_text(const std::string& path, const std::string& text_column,
                      const std::function<void(const std::string&)>& visit, const ChatTemplate* chat = nullptr);

// A column a trainer reads, and the training_params.json key that names it (for the error when it is missing).
struct DataColumn {
  std::string name, key;
};
using Row = std::vector<std::string>;
using RowVisitor = std::function<void(const Row&)>;

// for_each_text for several columns: `visit` sees each record's cells in the order of `columns`. A .txt file
// has one column only.
int64_t for_each_record(const std::string& path, const std::vector<DataColumn>& columns, const RowVisitor& visit,
                        const ChatTemplate* chat = nullptr);

// The same with the cells as they are (a JSON value; a CSV field or .txt line is a string): for columns that hold
// conversations to be rendered more than one way. `where` is "file:line" for errors.
using CellRow = std::vector<nlohmann::ordered_json>;
int64_t for_each_record_cells(const std::string& path, const std::vector<DataColumn>& columns,
                              const std::function<void(const CellRow&, const std::string& where)>& visit);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(const std::string& text);

// Packs token ids into blocks of block_size: the ids of all texts are concatenated and cut; the last,
// incomplete block is dropped (AutoTrain's group_texts). Labels are the inputs (loss on every token).
class BlockPacker {
 public:
  explicit BlockPacker(int64_t block_size);
  void add(const std::vector<int32_t>& ids);      // appends the ids of one text
  bool has_block() const;
  std::vector<int32_t> take_block();               // the oldest complete block
  int64_t tokens_seen() const { return tokens_seen_; }
  int64_t pending_tokens() const { return static_cast<int64_t>(buffer_.size() - start_); }

 private:
  int64_t block_size_;
  std::vector<int32_t> buffer_;
  size_t start_ = 0;
  int64_t tokens_seen_ = 0;
};

}  // namespace autotrain
