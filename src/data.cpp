#include "autotrain/data.h"

#include <array>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "autotrain/arrow.h"
#include "autotrain/chat_template.h"
#include "autotrain/error.h"
#include "autotrain/parquet.h"
#include "autotrain/text_util.h"
#include "compressed_file.h"

namespace autotrain {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;  // a conversation's messages keep their keys' order, as in Python

namespace {

// The format's extension, past a compression suffix ("train.jsonl.gz" -> ".jsonl").
std::string extension_of(const std::string& path) {
  return ascii_lower(fs::path(without_compression_suffix(path)).extension().string());
}

// The formats whose records are rows of typed columns, each compressing its own parts (so not read compressed
// whole): by extension, how messages name a file of it and what it compresses; null for the text formats.
struct ColumnarFormat {
  const char* a_file;
  const char* compresses;
};
const ColumnarFormat* columnar_format(const std::string& ext) {
  static const ColumnarFormat parquet{"a Parquet file", "Parquet compresses its own pages"},
      arrow{"an Arrow file", "Arrow IPC compresses its own buffers"};
  return ext == ".parquet" ? &parquet : ext == ".arrow" ? &arrow : nullptr;
}

// "file:line", or "file, row N" for Parquet and Arrow (whose records are rows, counted from 1).
std::string where(const std::string& path, int64_t line) {
  return path + (columnar_format(extension_of(path)) ? ", row " : ":") + std::to_string(line);
}

[[noreturn]] void refuse_long_record(const std::string& path, int64_t line) {
  throw Error(where(path, line) + ": a record longer than " + std::to_string(kMaxRecordBytes >> 20) +
              " MiB; each text is tokenized whole, so split it into records (lines) of at most that size");
}

// A cell's text: the string itself, or with `chat` the conversation it holds rendered by the template.
std::string text_of_cell(const json& cell, const std::string& column, const ChatTemplate* chat,
                         const std::string& path, int64_t line) {
  std::string text;
  if (chat) {
    const json messages = conversation_of(cell, where(path, line) + ": column \"" + column + "\"");
    try {
      text = chat->apply(messages);
    } catch (const Error& e) {
      throw Error(where(path, line) + ": " + e.what());
    }
  } else if (cell.is_string()) {
    text = cell.get<std::string>();
  } else {
    throw Error(where(path, line) + ": column \"" + column + "\" is " + cell.dump().substr(0, 40) +
                ", not a string" + (cell.is_array() ? " (a conversation? set \"chat_template\": \"tokenizer\")" : ""));
  }
  if (text.size() > kMaxRecordBytes) refuse_long_record(path, line);
  return text;
}

// A column the dataset lacks, at `place` ("file:line", or the file), with the columns it has and the key to set.
// `detail`: where it was looked for (" in the header"), or nothing.
Error missing_column(const std::string& place, const DataColumn& column, const std::vector<std::string>& found,
                     const std::string& detail = "") {
  return Error(place + ": no column \"" + column.name + "\"" + detail + " (columns found: " + join(found, ", ") +
               "); set \"" + column.key + "\" in training_params.json");
}

// The cells of `columns` in a JSON record, in that order.
CellRow row_of(const json& record, const std::vector<DataColumn>& columns, const std::string& path, int64_t line) {
  if (!record.is_object()) throw Error(where(path, line) + ": expected a JSON object per record");
  CellRow row;
  for (const DataColumn& column : columns) {
    auto it = record.find(column.name);
    if (it == record.end()) {
      std::vector<std::string> found;
      for (const auto& item : record.items()) found.push_back(item.key());
      throw missing_column(where(path, line), column, found);
    }
    row.push_back(*it);
  }
  return row;
}

// std::getline that throws once a line passes kMaxRecordBytes, so a file without newlines is refused
// before it fills the memory. False when nothing is left.
bool read_line(std::istream& in, std::string& line, const std::string& path, int64_t number) {
  line.clear();
  std::array<char, 1 << 16> buffer;
  while (true) {
    in.getline(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto extracted = static_cast<size_t>(in.gcount());
    const bool newline = in.good();  // extracted counts the newline, the buffer does not hold it
    const bool last = in.eof() || in.bad();
    line.append(buffer.data(), newline ? extracted - 1 : extracted);
    if (line.size() > kMaxRecordBytes) refuse_long_record(path, number);
    if (newline) return true;
    if (last) return !line.empty();
    in.clear();  // the buffer filled before the newline: read on
  }
}

void check_utf8(const std::string& text, const std::string& path, int64_t line) {
  if (!is_valid_utf8(text))
    throw Error(where(path, line) + ": not valid UTF-8; re-encode the file as UTF-8 (e.g. iconv -f cp949 -t utf-8)");
}

// Each reader calls visit(cells, line) per record.
using CellVisitor = std::function<void(const CellRow&, int64_t line)>;

int64_t read_jsonl(std::istream& in, const std::string& path, const std::vector<DataColumn>& columns,
                   const CellVisitor& visit) {
  std::string line;
  int64_t number = 0, count = 0;
  while (read_line(in, line, path, ++number)) {
    if (trim(line).empty()) continue;
    check_utf8(line, path, number);
    json record;
    try {
      record = json::parse(line);
    } catch (const json::exception&) {  // parse errors and numbers out of range alike
      throw Error(where(path, number) + ": not valid JSON; each line of a .jsonl file must be one JSON object");
    }
    visit(row_of(record, columns, path, number), number);
    ++count;
  }
  return count;
}

// Whether the file's first character past a BOM and white space is '['.
bool starts_an_array(const std::string& path) {
  const std::unique_ptr<std::istream> in = open_decompressed(path);
  char c = 0;
  const std::string skipped = " \t\r\n\xEF\xBB\xBF";  // white space and a UTF-8 BOM's bytes
  while (in->get(c) && skipped.find(c) != std::string::npos) {
  }
  return *in && c == '[';
}

int64_t read_json_array(std::istream& in, const std::string& path, const std::vector<DataColumn>& columns,
                        const CellVisitor& visit) {
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check_utf8(text, path, 1);
  json document;
  try {
    document = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(path + ": not valid JSON (byte " + std::to_string(e.byte) + ")");
  } catch (const json::exception& e) {  // a number out of range
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!document.is_array()) throw Error(path + ": expected a JSON array of records (or use .jsonl)");
  int64_t count = 0;
  for (const auto& record : document) {
    ++count;
    visit(row_of(record, columns, path, count), count);
  }
  return count;
}

// One CSV record (RFC 4180): fields split on commas; a quoted field may hold commas, "" and newlines.
// Returns false at end of input. `line` is advanced by the physical lines the record spans.
bool read_csv_record(std::istream& in, std::vector<std::string>& fields, int64_t& line, const std::string& path) {
  fields.clear();
  std::string field;
  bool in_quotes = false, any = false, was_quoted = false;
  int64_t start_line = line + 1;
  char c;
  while (in.get(c)) {
    any = true;
    if (in_quotes) {
      if (c == '"') {
        if (in.peek() == '"') {
          in.get(c);
          field += '"';
        } else {
          in_quotes = false;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
        if (field.size() > kMaxRecordBytes) refuse_long_record(path, start_line);
      }
      continue;
    }
    if (c == '"' && field.empty() && !was_quoted) {
      in_quotes = was_quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
      was_quoted = false;
    } else if (c == '\n') {
      ++line;
      if (!field.empty() && field.back() == '\r') field.pop_back();
      fields.push_back(std::move(field));
      return true;
    } else {
      field += c;
      if (field.size() > kMaxRecordBytes) refuse_long_record(path, start_line);
    }
  }
  if (in_quotes) throw Error(where(path, start_line) + ": a quoted CSV field is never closed");
  if (!any) return false;
  ++line;
  if (!field.empty() && field.back() == '\r') field.pop_back();
  fields.push_back(std::move(field));
  return true;
}

int64_t read_csv(std::istream& in, const std::string& path, const std::vector<DataColumn>& columns,
                 const CellVisitor& visit) {
  std::vector<std::string> header, fields;
  int64_t line = 0, count = 0;
  if (!read_csv_record(in, header, line, path)) throw Error(path + ": empty CSV file (expected a header row)");
  if (!header.empty() && header[0].rfind("\xEF\xBB\xBF", 0) == 0) header[0] = header[0].substr(3);  // BOM
  std::vector<size_t> indices;
  for (const DataColumn& column : columns) {
    size_t index = header.size();
    for (size_t i = 0; i < header.size(); ++i)
      if (trim(header[i]) == column.name) index = i;
    if (index == header.size()) throw missing_column(path, column, header, " in the header");
    indices.push_back(index);
  }
  while (true) {
    int64_t record_line = line + 1;
    if (!read_csv_record(in, fields, line, path)) break;
    if (fields.size() == 1 && fields[0].empty()) continue;  // blank line
    if (fields.size() != header.size())
      throw Error(where(path, record_line) + ": " + std::to_string(fields.size()) + " fields, the header has " +
                  std::to_string(header.size()) + "; quote fields that contain commas");
    CellRow row;
    for (size_t c = 0; c < columns.size(); ++c) {
      check_utf8(fields[indices[c]], path, record_line);
      row.push_back(json(std::move(fields[indices[c]])));
    }
    visit(row, record_line);
    ++count;
  }
  return count;
}

// A Parquet or Arrow file's rows (ParquetFile and ArrowFile read alike).
template <typename ColumnarFile>
int64_t read_rows(const std::string& path, const std::vector<DataColumn>& columns, const CellVisitor& visit) {
  const ColumnarFile file = ColumnarFile::open(path);
  const std::vector<std::string> found = file.columns();
  std::vector<std::string> names;
  for (const DataColumn& column : columns) {
    if (std::find(found.begin(), found.end(), column.name) == found.end()) throw missing_column(path, column, found);
    names.push_back(column.name);
  }
  return file.for_each_row(names, [&](CellRow& cells, int64_t row) { visit(cells, row); });
}

int64_t read_txt(std::istream& in, const std::string& path, const CellVisitor& visit) {
  std::string line;
  int64_t number = 0, count = 0;
  while (read_line(in, line, path, ++number)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    check_utf8(line, path, number);
    visit({json(line)}, number);
    ++count;
  }
  return count;
}

}  // namespace

bool is_columnar_file(const std::string& path) {
  return columnar_format(extension_of(path)) && compression_of(path) == FileCompression::none;
}

int64_t rows_in_file(const std::string& path) {
  if (!is_columnar_file(path)) return 0;
  return extension_of(path) == ".parquet" ? ParquetFile::open(path).rows() : ArrowFile::open(path).rows();
}

std::string dataset_extension(const std::string& path) { return extension_of(path); }

const std::vector<std::string>& dataset_extensions() {
  static const std::vector<std::string> extensions = {".jsonl", ".json", ".csv", ".txt", ".parquet", ".arrow"};
  return extensions;
}

bool is_dataset_file(const std::string& path) {
  const std::string ext = extension_of(path);
  return std::find(dataset_extensions().begin(), dataset_extensions().end(), ext) != dataset_extensions().end();
}

namespace {

int64_t read_cell_rows(const std::string& path, const std::vector<DataColumn>& columns, const CellVisitor& visit) {
  const std::string ext = extension_of(path);
  const ColumnarFormat* columnar = columnar_format(ext);
  if (columnar && compression_of(path) != FileCompression::none)
    throw Error(path + ": " + columnar->a_file + " compressed whole, which autotrain does not read; decompress it (" +
                columnar->compresses + ")");
  if (ext == ".parquet") return read_rows<ParquetFile>(path, columns, visit);
  if (ext == ".arrow") return read_rows<ArrowFile>(path, columns, visit);
  const std::unique_ptr<std::istream> stream = open_decompressed(path);  // .gz / .zst decompressed as it is read
  std::istream& in = *stream;
  int64_t count = 0;
  if (ext == ".jsonl") count = read_jsonl(in, path, columns, visit);
  else if (ext == ".json" && starts_an_array(path)) count = read_json_array(in, path, columns, visit);
  else if (ext == ".json") count = read_jsonl(in, path, columns, visit);  // JSON Lines in a .json, as datasets reads
  else if (ext == ".csv") count = read_csv(in, path, columns, visit);
  else if (ext == ".txt" && columns.size() == 1) count = read_txt(in, path, visit);
  else if (ext == ".txt") throw Error(path + ": a .txt dataset holds one text per line; this trainer reads columns " +
                                      "from .jsonl, .json, .csv, .parquet or .arrow");
  else throw Error(path + ": unknown dataset format \"" + ext + "\"; use .jsonl, .json, .csv, .txt, .parquet or " +
                   ".arrow");
  if (in.bad()) throw Error(path + ": read failed");
  return count;
}

using FileCellVisitor = std::function<void(const std::string& path, const CellRow&, int64_t line)>;

int64_t for_each_cell_row(const DataFiles& files, const std::vector<DataColumn>& columns,
                          const FileCellVisitor& visit) {
  int64_t count = 0;
  for (const std::string& path : files)
    count += read_cell_rows(path, columns, [&](const CellRow& cells, int64_t line) { visit(path, cells, line); });
  if (count == 0)
    throw Error(files_label(files) + ": the dataset has no texts; add records with a \"" + columns.front().name +
                "\" column");
  return count;
}

}  // namespace

int64_t for_each_record(const DataFiles& files, const std::vector<DataColumn>& columns, const RowVisitor& visit,
                        const ChatTemplate* chat) {
  return for_each_cell_row(files, columns, [&](const std::string& path, const CellRow& cells, int64_t line) {
    Row row;
    for (size_t c = 0; c < columns.size(); ++c)
      row.push_back(text_of_cell(cells[c], columns[c].name, chat, path, line));
    visit(row);
  });
}

int64_t for_each_record_cells(const DataFiles& files, const std::vector<DataColumn>& columns,
                              const std::function<void(const CellRow&, const std::string& where)>& visit) {
  return for_each_cell_row(files, columns, [&](const std::string& path, const CellRow& cells, int64_t line) {
    for (const json& cell : cells)
      if (cell.is_string() && cell.get_ref<const std::string&>().size() > kMaxRecordBytes)
        refuse_long_record(path, line);
    visit(cells, where(path, line));
  });
}

int64_t for_each_text(const DataFiles& files, const std::string& text_column,
                      const std::function<void(const std::string&)>& visit, const ChatTemplate* chat,
                      int64_t* nulls_read) {
  return for_each_cell_row(files, {{text_column, "text_column"}},
                           [&](const std::string& path, const CellRow& cells, int64_t line) {
                             if (nulls_read && !chat && cells[0].is_null()) {
                               ++*nulls_read;
                               visit("");
                               return;
                             }
                             visit(text_of_cell(cells[0], text_column, chat, path, line));
                           });
}

bool is_valid_utf8(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code, minimum;
    if ((c & 0xE0) == 0xC0) length = 2, code = c & 0x1F, minimum = 0x80;
    else if ((c & 0xF0) == 0xE0) length = 3, code = c & 0x0F, minimum = 0x800;
    else if ((c & 0xF8) == 0xF0) length = 4, code = c & 0x07, minimum = 0x10000;
    else return false;
    if (i + length > n) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      code = (code << 6) | (s[i + k] & 0x3F);
    }
    if (code < minimum || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

BlockPacker::BlockPacker(int64_t block_size) : block_size_(block_size) {
  if (block_size < 1) throw Error("block_size must be >= 1");
}

void BlockPacker::add(const std::vector<int32_t>& ids) {
  buffer_.insert(buffer_.end(), ids.begin(), ids.end());
  tokens_seen_ += static_cast<int64_t>(ids.size());
}

bool BlockPacker::has_block() const { return pending_tokens() >= block_size_; }

std::vector<int32_t> BlockPacker::take_block() {
  if (!has_block()) throw Error("BlockPacker: no complete block");
  std::vector<int32_t> block(buffer_.begin() + static_cast<std::ptrdiff_t>(start_),
                             buffer_.begin() + static_cast<std::ptrdiff_t>(start_ + block_size_));
  start_ += static_cast<size_t>(block_size_);
  if (start_ > buffer_.size() / 2) {  // compact now and then, so memory stays near one block
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  return block;
}

}  // namespace autotrain
