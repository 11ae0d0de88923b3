// Parquet's file format as src/parquet.cpp and src/parquet_metadata.cpp read it: Thrift's compact protocol (the
// encoding of the footer and of page headers) and the footer's parts. Internal to src/.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autotrain/error.h"
#include "autotrain/parquet.h"

namespace autotrain {
namespace parquet {

constexpr int kMaxNesting = 32;  // schema groups within groups

// ---- variable-length integers (Thrift's compact protocol, the RLE / DELTA encodings, snappy's length) ----------

enum class Varint { ok, ended, too_long };

// The ULEB128 integer at data[at] (7 bits a byte, low first), `at` moved past it: `ended` when the bytes end
// inside it, `too_long` past 64 bits.
inline Varint read_varint(const uint8_t* data, size_t size, size_t& at, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (at == size) return Varint::ended;
    const uint8_t b = data[at++];
    value |= uint64_t(b & 0x7F) << shift;
    if (!(b & 0x80)) return Varint::ok;
  }
  return Varint::too_long;
}

// Zigzag's signed integer (0, -1, 1, -2, ... as 0, 1, 2, 3, ...).
inline int64_t zigzag_decode(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// ---- Thrift's compact protocol ------------------------------------------------------------------------------

enum CompactType : uint8_t {
  kStop = 0, kTrue = 1, kFalse = 2, kByte = 3, kI16 = 4, kI32 = 5, kI64 = 6, kDouble = 7, kBinary = 8, kList = 9,
  kSet = 10, kMap = 11, kStruct = 12
};

class CompactReader {
 public:
  CompactReader(const uint8_t* data, size_t size, const std::string& what) : data_(data), size_(size), what_(what) {}
  size_t position() const { return at_; }

  uint8_t byte() {
    if (at_ == size_) fail("ends early");
    return data_[at_++];
  }
  uint64_t varint() {
    uint64_t value = 0;
    const Varint read = read_varint(data_, size_, at_, value);
    if (read == Varint::ended) fail("ends early");
    if (read == Varint::too_long) fail("a number longer than 64 bits");
    return value;
  }
  int64_t i64() { return zigzag_decode(varint()); }
  int32_t i32() {
    const int64_t v = i64();
    if (v < INT32_MIN || v > INT32_MAX) fail("a 32-bit number out of range");
    return static_cast<int32_t>(v);
  }
  std::string binary() {
    const uint64_t n = varint();
    if (n > size_ - at_) fail("a string past the end");
    std::string s(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return s;
  }
  // A list's header: its element type and size (each element takes at least a byte, which bounds the size).
  std::pair<uint8_t, uint64_t> list() {
    const uint8_t b = byte();
    uint64_t n = b >> 4;
    if (n == 15) n = varint();
    if (n > size_ - at_) fail("a list longer than the bytes left");
    return {static_cast<uint8_t>(b & 15), n};
  }
  // Calls field(id, type) for each field of the struct here; a field it does not read (returns false) is skipped.
  // A bool field's value is its type (kTrue / kFalse).
  template <typename Field>
  void read_struct(Field&& field) {
    enter();
    int16_t last = 0;
    while (true) {
      const uint8_t b = byte();
      const uint8_t type = b & 15;
      if (type == kStop) break;
      const int16_t id = (b >> 4) != 0 ? static_cast<int16_t>(last + (b >> 4)) : static_cast<int16_t>(i32());
      last = id;
      if (!field(id, type)) skip(type);
    }
    --depth_;
  }
  template <typename Element>
  void read_list(Element&& element) {
    const auto [type, n] = list();
    for (uint64_t i = 0; i < n; ++i) element(type);
  }
  void skip(uint8_t type) {
    switch (type) {
      case kTrue: case kFalse: return;
      case kByte: byte(); return;
      case kI16: case kI32: case kI64: varint(); return;
      case kDouble: advance(8); return;
      case kBinary: advance(varint()); return;
      case kList: case kSet:
        enter();
        read_list([&](uint8_t element) { skip_element(element); });
        --depth_;
        return;
      case kMap: {
        enter();
        const uint64_t n = varint();
        const uint8_t types = n != 0 ? byte() : 0;
        for (uint64_t i = 0; i < n; ++i) skip_element(types >> 4), skip_element(types & 15);
        --depth_;
        return;
      }
      case kStruct: read_struct([](int16_t, uint8_t) { return false; }); return;
      default: fail("an unknown field type " + std::to_string(type));
    }
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(what_ + ": " + why + " (byte " + std::to_string(at_) + " of " + std::to_string(size_) +
                "); the file is truncated or broken: write it again (pyarrow.parquet.write_table)");
  }

 private:
  void skip_element(uint8_t type) {
    if (type == kTrue || type == kFalse) byte();  // a bool inside a container is a byte of its own
    else skip(type);
  }
  void advance(uint64_t n) {
    if (n > size_ - at_) fail("ends early");
    at_ += n;
  }
  void enter() {
    if (++depth_ > 64) fail("structures nested more than 64 deep");
  }

  const uint8_t* data_;
  size_t size_, at_ = 0;
  const std::string& what_;
  int depth_ = 0;
};

// ---- the footer -----------------------------------------------------------------------------------------------

enum PhysicalType { kBoolean = 0, kInt32 = 1, kInt64 = 2, kInt96 = 3, kFloat = 4, kDouble64 = 5, kByteArray = 6,
                    kFixedLenByteArray = 7 };
enum Repetition { kRequired = 0, kOptional = 1, kRepeated = 2 };
enum ConvertedType { kUtf8 = 0, kMapConverted = 1, kMapKeyValue = 2, kListConverted = 3 };
enum LogicalTypeField { kLogicalString = 1, kLogicalMap = 2, kLogicalList = 3 };

const char* physical_type_name(int type);

// A SchemaElement, placed in the tree (the schema is the tree's nodes in depth-first order, the root first).
struct SchemaNode {
  std::string name;
  int type = -1;  // PhysicalType; -1 for a group
  int repetition = kRequired;
  int32_t children_count = 0;
  int converted = -1;  // ConvertedType
  int logical = 0;     // the LogicalType union's field id; 0 when none
  std::vector<int> children;
  int parent = -1, def = 0, rep = 0, leaf = -1, first_leaf = -1;
  bool is_list() const { return converted == kListConverted || logical == kLogicalList; }
  bool is_map() const { return converted == kMapConverted || converted == kMapKeyValue || logical == kLogicalMap; }
};

struct ColumnChunk {
  int type = -1, codec = 0;
  std::vector<std::string> path;
  int64_t values = 0, compressed_size = 0, data_page_offset = -1, dictionary_page_offset = -1;
  // Where the chunk's pages start: its dictionary page when it has one (an offset of 0 means none: some writers
  // set it so), else its first data page.
  int64_t first_page_offset() const {
    return dictionary_page_offset > 0 ? std::min(dictionary_page_offset, data_page_offset) : data_page_offset;
  }
};

struct RowGroup {
  int64_t rows = 0;
  std::vector<ColumnChunk> columns;
};

// Throws Error(the file's path + ": " + why).
[[noreturn]] void refuse(const ParquetFile::Metadata& m, const std::string& why);

// Reads and checks the footer of the file at `path` (its schema as a tree with levels, its row groups).
std::unique_ptr<ParquetFile::Metadata> read_metadata(const std::string& path);

}  // namespace parquet

struct ParquetFile::Metadata {
  std::string path;
  int64_t file_size = 0, rows = 0;
  std::vector<parquet::SchemaNode> schema;  // [0] is the root
  std::vector<int> leaves;                  // schema indices of the leaf columns, in column-chunk order
  std::vector<parquet::RowGroup> row_groups;
};

}  // namespace autotrain
