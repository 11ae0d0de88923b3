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

// The files of one split, read in this order as one dataset.
using DataFiles = std::vector<std::string>;

// The files of `split`. data_path is a file (.jsonl, .json, .csv, .txt, .parquet, .arrow), or a folder, or a Hub
// dataset id whose snapshot is in the local Hugging Face cache (`hf download --repo-type dataset ID`; never
// downloaded).
// A folder saved by datasets' save_to_disk is read as load_from_disk(folder)[split] reads it (a DatasetDict's split,
// or one Dataset as train). In another folder (src/dataset_layout.cpp), as `datasets.load_dataset(folder,
// split=...)` finds them, in its order:
//   - with a README.md dataset card listing `configs:`, the data_files of the default config (the only one, the
//     one named "default" or marked `default: true`), or of CONFIG when `split` is AutoTrain's "CONFIG:SPLIT";
//   - else `<split>.jsonl|.json|.csv|.txt|.parquet|.arrow` (AutoTrain's layout: data/train.csv); else the Hub's
//     shards data/<split>-00000-of-00003.parquet ...; else the files under folders named for the split (train/, ...);
//     else the files named for it (train-part1.jsonl, my_train.csv, ...; with datasets' synonyms: validation =
//     valid, dev, val; test = testing, eval, evaluation; train = training); else, for train, every data file.
// Throws Error naming what was looked for, or when a split mixes formats.
DataFiles resolve_split_files(const std::string& data_path, const std::string& split);

// "file", or "first-file and 2 more files": the files in a message.
std::string files_label(const DataFiles& files);

// A Parquet or Arrow file (not compressed whole): its records are rows, counted by rows_in_file.
bool is_columnar_file(const std::string& path);
// The rows of a Parquet or Arrow file, read from its metadata (0 for the text formats, which count bytes).
int64_t rows_in_file(const std::string& path);
// The formats for_each_record reads, by extension, in the order a folder's <split>.<ext> is looked for.
const std::vector<std::string>& dataset_extensions();
bool is_dataset_file(const std::string& path);
std::string dataset_extension(const std::string& path);  // ".jsonl", ".parquet", ... (lower case)

// The longest record read: a line of .jsonl / .txt, a CSV record, a text of .json. Each text is tokenized
// whole, and one of 100 MB would take ~15 GB with a sentencepiece BPE (and minutes); a record this long is
// nearly always a file without newlines or a quote that is never closed, so it is refused, naming the line.
constexpr size_t kMaxRecordBytes = 16u << 20;

class ChatTemplate;

// Calls `visit` with the text_column of every record, in file order (the files in turn). JSONL: one object per
// line; JSON: an array of objects, or JSON Lines as in .jsonl (datasets reads a .json either way); CSV: RFC 4180
// with a header row (quoted fields may hold commas, quotes and newlines); TXT: one text per line; Parquet and
// Arrow: one row per record (parquet.h, arrow.h). The text formats may be compressed whole (.gz, .zst:
// src/compressed_file.h). Throws Error naming the file and line (or row) on a missing column (listing the columns
// found), a non-string value, malformed JSON/CSV/Parquet/Arrow, bytes that are not UTF-8, a record longer than
// kMaxRecordBytes or no records at all. Returns the count.
// With `chat`, the column holds conversations (a JSON list of messages, or a string holding one: see
// conversation_of) and `visit` sees each rendered by the template; a conversation the template refuses is an
// Error naming the file and line. With `nulls_read` (and no `chat`), a null text (JSON null, a Parquet or Arrow
// null) is read as an empty one and counted there, as AutoTrain's default trainer reads it (pandas' fillna("")).
int64_t for_each_text(const DataFiles& files, const std::string& text_column,
                      const std::function<void(const std::string&)>& visit, const ChatTemplate* chat = nullptr,
                      int64_t* nulls_read = nullptr);

// A column a trainer reads, and the training_params.json key that names it (for the error when it is missing).
struct DataColumn {
  std::string name, key;
};
using Row = std::vector<std::string>;
using RowVisitor = std::function<void(const Row&)>;

// for_each_text for several columns: `visit` sees each record's cells in the order of `columns`. A .txt file
// has one column only.
int64_t for_each_record(const DataFiles& files, const std::vector<DataColumn>& columns, const RowVisitor& visit,
                        const ChatTemplate* chat = nullptr);

// The same with the cells as they are (a JSON value; a CSV field or .txt line is a string): for columns that hold
// conversations to be rendered more than one way. `where` is "file:line" (or "file, row N") for errors.
using CellRow = std::vector<nlohmann::ordered_json>;
int64_t for_each_record_cells(const DataFiles& files, const std::vector<DataColumn>& columns,
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
