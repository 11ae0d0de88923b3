// Apache Parquet datasets, as Hugging Face `datasets`, the Hub's parquet converter, pyarrow, polars and pandas write
// them, read for the columns a trainer needs. Each named top-level column becomes a JSON value per row: strings,
// numbers, booleans and nulls as such, lists as arrays, structs as objects (a conversation is a list of
// {"role", "content"} structs). What is read (parquet-format's spec, reference.md "Parquet"):
//   - pages: data pages v1 and v2, dictionary pages; encodings PLAIN, PLAIN_DICTIONARY / RLE_DICTIONARY,
//     RLE (levels, booleans), DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY;
//   - compression: none, snappy (pyarrow's default), gzip, zstd, LZ4 (LZ4_RAW, and the older Hadoop-framed LZ4);
//   - types: BYTE_ARRAY (text; checked to be UTF-8), BOOLEAN, INT32, INT64, FLOAT, DOUBLE; nesting with at most
//     one repeated level on a column's path (a list of structs of scalars, not a list of lists).
// Anything else in a column that is read (Brotli or LZO pages, maps, nested lists, INT96 timestamps, encrypted
// files) is refused with the file, the column and what to do; columns not read may hold anything.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace autotrain {

class ParquetFile {
 public:
  // Reads and checks the footer (the file's metadata). Throws Error naming the file when it is not Parquet,
  // truncated or broken.
  static ParquetFile open(const std::string& path);
  ~ParquetFile();
  ParquetFile(ParquetFile&&) noexcept;
  ParquetFile& operator=(ParquetFile&&) noexcept;

  const std::string& path() const;
  int64_t rows() const;
  std::vector<std::string> columns() const;  // the top-level column names, in the file's order

  // Calls visit(cells, row) for every row, in the file's order (row counts from 1); cells[i] is the value of
  // columns[i], which must be top-level columns (columns()). Reads and decodes a page of each of those columns at a
  // time, so memory does not grow with a row group's size.
  using RowVisitor = std::function<void(std::vector<nlohmann::ordered_json>& cells, int64_t row)>;
  int64_t for_each_row(const std::vector<std::string>& columns, const RowVisitor& visit) const;

  struct Metadata;  // the footer, read and checked (src/parquet.cpp)

 private:
  explicit ParquetFile(std::unique_ptr<Metadata> metadata);
  std::unique_ptr<Metadata> metadata_;
};

// Page decompression (src/parquet_codecs.cpp), by parquet-format's CompressionCodec number: `size` is the page's
// uncompressed size from its header, which the output must fill exactly. Throws Error(`what` + ...) on corrupt
// input or a codec not read.
std::string decompress_page(int codec, const uint8_t* data, size_t length, size_t size, const std::string& what);

// A zstd frame (or several) of exactly `size` bytes once decompressed (Parquet's ZSTD pages, Arrow's zstd buffers).
// Throws Error(`what` + ...) when corrupt.
std::string zstd_decompress(const uint8_t* data, size_t length, size_t size, const std::string& what);

// LZ4 (src/parquet_codecs.cpp), exactly `size` bytes once decompressed: a raw block (Parquet's LZ4_RAW pages), the
// frame format (Arrow's LZ4_FRAME buffers), or Hadoop's framing of blocks (Parquet's old LZ4 pages; a plain block or
// frame under that codec is read too). Throws Error(`what` + ...) when corrupt.
enum class Lz4Format { block, frame, hadoop };
std::string lz4_decompress(Lz4Format format, const uint8_t* data, size_t length, size_t size, const std::string& what);

// Snappy's raw format (google/snappy format_description.txt), the one Parquet pages use: a varint of the
// uncompressed length (which must be `size`), then literals and back-references. Throws Error(`what` + ...) when
// corrupt.
std::string snappy_decompress(const uint8_t* data, size_t length, size_t size, const std::string& what);

}  // namespace autotrain
