// Apache Arrow IPC datasets: the .arrow files of Hugging Face `datasets` (`save_to_disk` folders, its cache, the
// Hub's .arrow shards), pyarrow's stream and file formats, read for the columns a trainer needs. Each named
// top-level column becomes a JSON value per row, as in parquet.h: strings, numbers, booleans and nulls as such,
// lists as arrays, structs as objects. What is read (apache/arrow docs/source/format/Columnar.rst, format/*.fbs):
//   - the stream format (a continuation marker before each message, or none as before Arrow 0.15) and the file
//     format ("ARROW1", the same stream, a footer); record batches one at a time;
//   - bodies uncompressed or with zstd or LZ4 (frame) buffers, as pyarrow's Feather V2 writes by default;
//   - types: Utf8 / LargeUtf8 (checked to be UTF-8), Int (8 to 64 bits), Float32 / Float64, Bool, Null, List /
//     LargeList / FixedSizeList and Struct of these, nested to any depth; any of them dictionary-encoded (pandas'
//     categoricals, dictionary_encode()), the dictionary batches replacing or extending (deltas) a column's values.
// Anything else in a column that is read (binary, decimals, dates and times, maps, unions, views, a dictionary
// within a dictionary's values, big-endian files) is refused with the file, the column and what to do; columns not
// read may hold anything.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace autotrain {

class ArrowFile {
 public:
  // Reads and checks the schema (the first message). Throws Error naming the file when it is not Arrow IPC,
  // truncated or broken.
  static ArrowFile open(const std::string& path);
  ~ArrowFile();
  ArrowFile(ArrowFile&&) noexcept;
  ArrowFile& operator=(ArrowFile&&) noexcept;

  const std::string& path() const;
  std::vector<std::string> columns() const;  // the top-level column names, in the schema's order
  int64_t rows() const;  // the record batches' lengths, summed (their metadata read, their bodies skipped)

  // Calls visit(cells, row) for every row, in the file's order (row counts from 1); cells[i] is the value of
  // columns[i], which must be top-level columns (columns()). Reads one record batch at a time. Returns the count.
  using RowVisitor = std::function<void(std::vector<nlohmann::ordered_json>& cells, int64_t row)>;
  int64_t for_each_row(const std::vector<std::string>& columns, const RowVisitor& visit) const;

  struct Schema;  // the fields, read and checked (src/arrow_ipc.cpp)

 private:
  explicit ArrowFile(std::unique_ptr<Schema> schema);
  std::unique_ptr<Schema> schema_;
};

}  // namespace autotrain
