// Arrow IPC files read for their text columns (see arrow.h). The layout (apache/arrow, docs/source/format/
// Columnar.rst "Serialization and Interprocess Communication", format/Schema.fbs, Message.fbs, File.fbs): a stream
// of messages, each a continuation marker 0xFFFFFFFF (absent before Arrow 0.15), the metadata's length, a Message
// flatbuffer and a body; the schema first, then dictionary and record batches, then 0xFFFFFFFF 0 or the end. The
// file format wraps the same stream in "ARROW1" and a footer. A record batch lists a node (length, null count) per
// field and the body's buffers in a depth-first walk of the schema; the columns asked for are put together from
// them, the others skipped. A dictionary-encoded field's batches hold its indices; its values come in dictionary
// batches before, kept as JSON values per dictionary id (a delta extends them, another batch replaces them).
// Every length, offset, index and count read from the file is checked before it is trusted.
#include "autotrain/arrow.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <tuple>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/parquet.h"
#include "flatbuffer.h"

namespace autotrain {
using json = nlohmann::ordered_json;
using flatbuffer::Table;
using flatbuffer::Vector;

namespace {

// Schema.fbs's Type union, in its order.
enum TypeId : uint8_t {
  kNone, kNull, kInt, kFloatingPoint, kBinary, kUtf8, kBool, kDecimal, kDate, kTime, kTimestamp, kInterval, kList,
  kStruct, kUnion, kFixedSizeBinary, kFixedSizeList, kMap, kDuration, kLargeBinary, kLargeUtf8, kLargeList,
  kRunEndEncoded, kBinaryView, kUtf8View, kListView, kLargeListView
};

const char* type_name(uint8_t type) {
  static const char* const names[] = {
      "none", "null", "integer", "floating-point", "binary", "string", "boolean", "decimal", "date", "time",
      "timestamp", "interval", "list", "struct", "union", "fixed-size binary", "fixed-size list", "map", "duration",
      "large binary", "large string", "large list", "run-end encoded", "binary view", "string view", "list view",
      "large list view"};
  return type <= kLargeListView ? names[type] : "unknown";
}

// Message.fbs's MessageHeader union.
enum MessageType : uint8_t { kSchemaMessage = 1, kDictionaryBatch = 2, kRecordBatch = 3 };

constexpr int kMaxNesting = 64;               // fields within fields
constexpr uint32_t kMaxFields = 1u << 16;     // in a schema, nested ones included
constexpr uint32_t kMaxMetadata = 64u << 20;  // a message's flatbuffer; pyarrow's are a few KB
constexpr int kMetadataV4 = 3;                // MetadataVersion V4 (Arrow 0.8 to 0.17); V5 since 1.0

}  // namespace

struct ArrowField {
  std::string name;
  uint8_t type = kNone;
  int bit_width = 0;        // Int
  bool is_signed = false;   // Int
  int precision = 0;        // FloatingPoint: 0 half, 1 single, 2 double
  int union_mode = 0;       // Union: 0 sparse, 1 dense
  int64_t list_size = 0;    // FixedSizeList
  bool dictionary = false;  // dictionary-encoded: its indices are in the batch, its values in a dictionary batch
  int64_t dictionary_id = 0;
  int index_bit_width = 32;  // the indices' Int type (Schema.fbs: int32 when not given)
  bool index_signed = true;
  std::vector<ArrowField> children;  // of the values' type (for a dictionary: of its values)
};

struct ArrowFile::Schema {
  std::string path;
  uint64_t messages_start = 0;  // the first message after the schema
  uint64_t messages_end = 0;    // the file's end, or the footer's start in the file format
  std::vector<ArrowField> fields;
};

namespace {

using Field = ArrowField;
using Schema = ArrowFile::Schema;

[[noreturn]] void broken(const std::string& path, const std::string& why) {
  throw Error(path + ": " + why + "; the file is damaged or not Arrow IPC");
}

// ---- messages -----------------------------------------------------------------------------------------------

struct Message {
  std::string metadata;  // the Message flatbuffer
  uint8_t type = 0;
  uint64_t body_at = 0;
  int64_t body_length = 0;
};

// The messages of a stream in order, read from a file between two positions.
class MessageReader {
 public:
  MessageReader(const std::string& path, uint64_t start, uint64_t end) : path_(path), at_(start), end_(end) {
    in_.open(path, std::ios::binary);
    if (!in_) throw Error(path + ": cannot open the dataset; check the path and permissions");
    in_.seekg(static_cast<std::streamoff>(start));
  }

  // The next message, or false at the end of the stream (its end marker, or the end of the file).
  bool next(Message& m) {
    if (at_ == end_) return false;
    uint32_t length = u32();
    if (length == 0xFFFFFFFFu) length = u32();  // the continuation marker; a bare length before Arrow 0.15
    if (length == 0) return false;              // the end-of-stream marker
    if (length > kMaxMetadata || length > end_ - at_)
      throw Error(path_ + ": the file ends inside a message's metadata; it is truncated (a copy that stopped early?)");
    m.metadata = bytes(length);
    const flatbuffer::Buffer fb = buffer_of(m);
    const Table root = fb.root();
    const int version = fb.scalar<int16_t>(root, 0, 0);
    if (version < kMetadataV4)
      throw Error(path_ + ": Arrow IPC metadata version V" + std::to_string(version + 1) +
                  ", older than Arrow 0.8's V4, which autotrain does not read; rewrite it with a current pyarrow");
    m.type = fb.scalar<uint8_t>(root, 1, 0);
    m.body_length = fb.scalar<int64_t>(root, 3, 0);
    m.body_at = at_;
    if (m.body_length < 0 || static_cast<uint64_t>(m.body_length) > end_ - at_)
      throw Error(path_ + ": the file ends inside a message's body; it is truncated (a copy that stopped early?)");
    return true;
  }
  // The message's header table (a Schema, RecordBatch, ...) in its metadata.
  flatbuffer::Buffer buffer_of(const Message& m) const {
    return flatbuffer::Buffer(reinterpret_cast<const uint8_t*>(m.metadata.data()), m.metadata.size(),
                              path_ + ": a message's metadata");
  }
  std::string body(const Message& m) { return bytes(static_cast<size_t>(m.body_length)); }
  void skip_body(const Message& m) {
    at_ += static_cast<uint64_t>(m.body_length);
    in_.seekg(static_cast<std::streamoff>(at_));
  }
  uint64_t at() const { return at_; }

 private:
  std::string bytes(size_t n) {
    if (n > end_ - at_)
      throw Error(path_ + ": the file ends inside a message; it is truncated (a copy that stopped early?)");
    std::string out(n, '\0');
    in_.read(out.data(), static_cast<std::streamsize>(n));
    if (!in_) throw Error(path_ + ": read failed");
    at_ += n;
    return out;
  }
  uint32_t u32() {
    const std::string b = bytes(4);
    uint32_t v;
    std::memcpy(&v, b.data(), 4);
    return v;
  }

  std::string path_;
  std::ifstream in_;
  uint64_t at_, end_;
};

// ---- the schema ---------------------------------------------------------------------------------------------

Field read_field(const flatbuffer::Buffer& fb, Table t, int depth, uint32_t& count) {
  if (depth > kMaxNesting) fb.broken("fields nested deeper than " + std::to_string(kMaxNesting));
  if (++count > kMaxFields) fb.broken("more than " + std::to_string(kMaxFields) + " fields");
  Field f;
  f.name = fb.string(t, 0);
  if (!is_valid_utf8(f.name)) fb.broken("a field name that is not UTF-8");
  f.type = fb.scalar<uint8_t>(t, 2, kNone);
  const Table type = fb.table(t, 3);
  if (f.type == kInt) {
    f.bit_width = fb.scalar<int32_t>(type, 0, 0);
    f.is_signed = fb.scalar<uint8_t>(type, 1, 0) != 0;
    if (f.bit_width != 8 && f.bit_width != 16 && f.bit_width != 32 && f.bit_width != 64)
      fb.broken("an integer of " + std::to_string(f.bit_width) + " bits");
  }
  if (f.type == kFloatingPoint) {
    f.precision = fb.scalar<int16_t>(type, 0, 0);
    if (f.precision < 0 || f.precision > 2) fb.broken("a floating-point precision of " + std::to_string(f.precision));
  }
  if (f.type == kUnion) f.union_mode = fb.scalar<int16_t>(type, 0, 0);
  if (f.type == kFixedSizeList) f.list_size = fb.scalar<int32_t>(type, 0, 0);
  if (f.type == kNone || f.type > kLargeListView)
    throw Error(fb.what() + ": field \"" + f.name + "\" has type number " + std::to_string(f.type) +
                ", which this reader does not know (from a newer Arrow?); rewrite the file without that column");
  if (const Table encoding = fb.table(t, 4)) {  // DictionaryEncoding: id, indexType, isOrdered, dictionaryKind
    f.dictionary = true;
    f.dictionary_id = fb.scalar<int64_t>(encoding, 0, 0);
    if (const Table index = fb.table(encoding, 1)) {
      f.index_bit_width = fb.scalar<int32_t>(index, 0, 0);
      f.index_signed = fb.scalar<uint8_t>(index, 1, 0) != 0;
    }
    if (f.index_bit_width != 8 && f.index_bit_width != 16 && f.index_bit_width != 32 && f.index_bit_width != 64)
      fb.broken("dictionary indices of " + std::to_string(f.index_bit_width) + " bits");
  }
  const Vector children = fb.vector(t, 5);
  fb.check_vector(children, 4);
  for (uint32_t i = 0; i < children.length; ++i) f.children.push_back(read_field(fb, fb.table_of(children, i),
                                                                                 depth + 1, count));
  const bool one_child = f.type == kList || f.type == kLargeList || f.type == kFixedSizeList || f.type == kMap ||
                         f.type == kListView || f.type == kLargeListView;
  if ((one_child && f.children.size() != 1) || (f.type == kRunEndEncoded && f.children.size() != 2) ||
      f.list_size < 0)
    fb.broken("a " + std::string(type_name(f.type)) + " field \"" + f.name + "\" with " +
              std::to_string(f.children.size()) + " children");
  return f;
}

// ---- a record batch's nodes and buffers ---------------------------------------------------------------------

struct Span {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

// The nodes and buffers of one record batch, taken in the schema's depth-first order.
class Batch {
 public:
  Batch(const flatbuffer::Buffer& fb, Table header, const std::string& body, const std::string& path)
      : fb_(fb), body_(body), path_(path) {
    length_ = fb.scalar<int64_t>(header, 0, 0);
    nodes_ = fb.vector(header, 1);
    buffers_ = fb.vector(header, 2);
    variadic_ = fb.vector(header, 4);
    fb.check_vector(nodes_, 16);
    fb.check_vector(buffers_, 16);
    fb.check_vector(variadic_, 8);
    if (const Table compression = fb.table(header, 3)) {
      const int codec = fb.scalar<int8_t>(compression, 0, 0);
      if (codec != 0 && codec != 1)  // BodyCompression's CompressionType: LZ4_FRAME 0, ZSTD 1
        throw Error(path + ": record batches compressed with codec " + std::to_string(codec) +
                    ", which autotrain does not read; rewrite the file uncompressed or with zstd (pyarrow: " +
                    "pa.ipc.new_stream(path, schema, options=pa.ipc.IpcWriteOptions(compression=\"zstd\")))");
      codec_ = codec == 0 ? Codec::lz4 : Codec::zstd;
    }
    if (length_ < 0 || static_cast<uint64_t>(length_) > 8 * uint64_t(body.size()) + 64)
      fb.broken("a record batch of " + std::to_string(length_) + " rows in " + std::to_string(body.size()) + " bytes");
  }
  int64_t length() const { return length_; }

  // The next field node: its length and null count, checked.
  std::pair<int64_t, int64_t> node() {
    if (next_node_ >= nodes_.length) fb_.broken("a record batch with fewer field nodes than the schema has fields");
    const uint32_t i = next_node_++;
    const int64_t length = fb_.struct_field<int64_t>(nodes_, i, 16, 0);
    const int64_t null_count = fb_.struct_field<int64_t>(nodes_, i, 16, 8);
    if (length < 0 || null_count < 0 || null_count > length ||
        static_cast<uint64_t>(length) > 8 * uint64_t(body_.size()) + 64)
      fb_.broken("a field node of " + std::to_string(length) + " values and " + std::to_string(null_count) +
                 " nulls");
    return {length, null_count};
  }
  // The next buffer of the body, decompressed when the batch is.
  Span buffer() {
    if (next_buffer_ >= buffers_.length) fb_.broken("a record batch with fewer buffers than its fields take");
    const uint32_t i = next_buffer_++;
    const int64_t offset = fb_.struct_field<int64_t>(buffers_, i, 16, 0);
    const int64_t length = fb_.struct_field<int64_t>(buffers_, i, 16, 8);
    if (offset < 0 || length < 0 || static_cast<uint64_t>(offset) > body_.size() ||
        static_cast<uint64_t>(length) > body_.size() - static_cast<uint64_t>(offset))
      fb_.broken("a buffer outside its record batch's body");
    const uint8_t* data = reinterpret_cast<const uint8_t*>(body_.data()) + offset;
    if (codec_ == Codec::none || length == 0) return {data, static_cast<size_t>(length)};
    // A compressed buffer: its uncompressed length (-1: stored as it is), then the zstd or LZ4 frame.
    if (length < 8) fb_.broken("a compressed buffer of " + std::to_string(length) + " bytes");
    int64_t size;
    std::memcpy(&size, data, 8);
    if (size == -1) return {data + 8, static_cast<size_t>(length - 8)};
    if (size < 0) fb_.broken("a compressed buffer of " + std::to_string(size) + " bytes");
    const std::string what = path_ + ": a record batch's buffer";
    const auto compressed = static_cast<size_t>(length - 8);
    decompressed_.push_back(
        codec_ == Codec::zstd
            ? zstd_decompress(data + 8, compressed, static_cast<size_t>(size), what)
            : lz4_decompress(Lz4Format::frame, data + 8, compressed, static_cast<size_t>(size), what));
    return {reinterpret_cast<const uint8_t*>(decompressed_.back().data()), decompressed_.back().size()};
  }
  void skip_buffer() {
    if (next_buffer_++ >= buffers_.length) fb_.broken("a record batch with fewer buffers than its fields take");
  }
  // The count of variadic buffers of the next view field (a binary or string view).
  int64_t variadic_count() {
    if (next_variadic_ >= variadic_.length) fb_.broken("a view field without its count of data buffers");
    const int64_t count = fb_.struct_field<int64_t>(variadic_, next_variadic_++, 8, 0);
    if (count < 0 || count > int64_t(buffers_.length)) fb_.broken("a view field with " + std::to_string(count) +
                                                                  " data buffers");
    return count;
  }

 private:
  const flatbuffer::Buffer& fb_;
  const std::string& body_;
  const std::string& path_;
  int64_t length_ = 0;
  Vector nodes_, buffers_, variadic_;
  uint32_t next_node_ = 0, next_buffer_ = 0, next_variadic_ = 0;
  enum class Codec { none, zstd, lz4 } codec_ = Codec::none;
  std::deque<std::string> decompressed_;  // a deque: the spans into earlier buffers stay valid
};

// Steps over a field not read: its node, its buffers and its children's (Columnar.rst's buffer layouts).
void skip_field(Batch& batch, const Field& f) {
  batch.node();
  int64_t buffers = 2;  // validity and values (or offsets) for most types
  if (f.dictionary) buffers = 2;  // validity and indices; the values are in a dictionary batch
  else if (f.type == kNull || f.type == kRunEndEncoded) buffers = 0;
  else if (f.type == kStruct || f.type == kFixedSizeList) buffers = 1;
  else if (f.type == kUnion) buffers = f.union_mode == 1 ? 2 : 1;  // type ids (and offsets); no validity since V5
  else if (f.type == kBinary || f.type == kUtf8 || f.type == kLargeBinary || f.type == kLargeUtf8 ||
           f.type == kListView || f.type == kLargeListView)
    buffers = 3;
  else if (f.type == kBinaryView || f.type == kUtf8View) buffers = 2 + batch.variadic_count();
  for (int64_t i = 0; i < buffers; ++i) batch.skip_buffer();
  if (!f.dictionary)
    for (const Field& child : f.children) skip_field(batch, child);
}

// ---- arrays and their values --------------------------------------------------------------------------------

// A dictionary's values by id, as the dictionary batches so far left them (JSON values, ready for the rows).
using Dictionaries = std::map<int64_t, std::vector<json>>;

// A field's values in one record batch.
struct Array {
  const Field* field = nullptr;
  int64_t length = 0, null_count = 0;
  Span validity, offsets, values;  // a dictionary-encoded field's values are its indices
  std::vector<Array> children;
  const std::vector<json>* dictionary = nullptr;
};

// `in_dictionary`: within a dictionary's values, where a dictionary of its own is not read.
bool is_readable(const Field& f, bool in_dictionary) {
  if (f.dictionary && in_dictionary) return false;
  switch (f.type) {
    case kNull: case kInt: case kBool: case kUtf8: case kLargeUtf8: case kStruct: case kList: case kLargeList:
    case kFixedSizeList: return true;
    case kFloatingPoint: return f.precision != 0;
    default: return false;
  }
}

// The first field in `f` (itself or nested) that is not read, or null.
const Field* unreadable_in(const Field& f, bool in_dictionary = false) {
  if (!is_readable(f, in_dictionary)) return &f;
  for (const Field& child : f.children)
    if (const Field* found = unreadable_in(child, in_dictionary || f.dictionary)) return found;
  return nullptr;
}

// The dictionary-encoded fields in `f` (itself or nested), by dictionary id.
void collect_dictionaries(const Field& f, std::map<int64_t, const Field*>& out) {
  if (f.dictionary) out[f.dictionary_id] = &f;
  for (const Field& child : f.children) collect_dictionaries(child, out);
}

std::string description_of(const Field& f) {
  // Of a field unreadable_in found: readable on its own, it is a dictionary within a dictionary's values.
  if (is_readable(f, false)) return "dictionary-encoded values inside a dictionary's values";
  if (f.type == kFloatingPoint) return "half-precision floats";
  return std::string(type_name(f.type)) + " values";
}

int offset_width(const Field& f) { return f.type == kLargeUtf8 || f.type == kLargeList ? 8 : 4; }

void require(bool ok, const Field& f, const std::string& what, const flatbuffer::Buffer& fb) {
  if (!ok) fb.broken("field \"" + f.name + "\" with " + what);
}

Array load_array(Batch& batch, const Field& f, const flatbuffer::Buffer& fb, const Dictionaries* dictionaries) {
  Array a;
  a.field = &f;
  std::tie(a.length, a.null_count) = batch.node();
  if (f.dictionary) {  // validity and indices; the values are the dictionary's
    const auto found = dictionaries ? dictionaries->find(f.dictionary_id) : Dictionaries::const_iterator();
    if (!dictionaries || found == dictionaries->end())
      fb.broken("dictionary-encoded field \"" + f.name + "\" before its dictionary");
    a.dictionary = &found->second;
    a.validity = batch.buffer();
    require(a.null_count == 0 || a.validity.size >= static_cast<size_t>((a.length + 7) / 8), f,
            "a validity bitmap shorter than its values", fb);
    a.values = batch.buffer();
    require(a.values.size >= static_cast<size_t>(a.length) * static_cast<size_t>(f.index_bit_width / 8), f,
            "fewer indices than its length", fb);
    return a;
  }
  if (f.type == kNull) {
    a.null_count = a.length;  // no buffers: every value is null
  } else {
    a.validity = batch.buffer();
    require(a.null_count == 0 || a.validity.size >= static_cast<size_t>((a.length + 7) / 8), f,
            "a validity bitmap shorter than its values", fb);
  }
  const size_t n = static_cast<size_t>(a.length);
  if (f.type == kInt || f.type == kFloatingPoint || f.type == kBool) {
    a.values = batch.buffer();
    const size_t width = f.type == kInt ? f.bit_width / 8 : f.precision == 1 ? 4 : 8;
    const size_t bytes = f.type == kBool ? (n + 7) / 8 : n * width;
    require(a.values.size >= bytes, f, "fewer values than its length", fb);
  } else if (f.type == kUtf8 || f.type == kLargeUtf8 || f.type == kList || f.type == kLargeList) {
    a.offsets = batch.buffer();
    require(n == 0 || a.offsets.size >= (n + 1) * offset_width(f), f, "fewer offsets than its length", fb);
    if (f.type == kUtf8 || f.type == kLargeUtf8) a.values = batch.buffer();
  }
  for (const Field& child : f.children) {
    a.children.push_back(load_array(batch, child, fb, dictionaries));
    const uint64_t needed = f.type == kFixedSizeList ? uint64_t(n) * uint64_t(f.list_size) : f.type == kStruct ? n : 0;
    require(uint64_t(a.children.back().length) >= needed, f, "a child shorter than its values", fb);
  }
  return a;
}

bool is_null(const Array& a, int64_t i) {
  if (a.null_count == 0) return false;
  if (a.field->type == kNull) return true;
  return !(a.validity.data[i >> 3] >> (i & 7) & 1);
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// The [begin, end) of value i of a string or list, checked against `limit` (its data's size or child's length).
std::pair<uint64_t, uint64_t> range_of(const Array& a, int64_t i, uint64_t limit) {
  int64_t begin, end;
  if (offset_width(*a.field) == 8) {
    begin = load<int64_t>(a.offsets.data + 8 * i);
    end = load<int64_t>(a.offsets.data + 8 * (i + 1));
  } else {
    begin = load<int32_t>(a.offsets.data + 4 * i);
    end = load<int32_t>(a.offsets.data + 4 * (i + 1));
  }
  if (begin < 0 || end < begin || static_cast<uint64_t>(end) > limit)
    throw Error("offsets " + std::to_string(begin) + " to " + std::to_string(end) + " outside its " +
                std::to_string(limit) + " values; the file is damaged");
  return {static_cast<uint64_t>(begin), static_cast<uint64_t>(end)};
}

// Integer i of an array of `bits`-bit integers at `data`, as JSON (unsigned ones stay unsigned).
json integer_at(const uint8_t* data, int64_t i, int bits, bool is_signed) {
  const uint8_t* p = data + i * (bits / 8);
  if (bits == 8) return is_signed ? json(load<int8_t>(p)) : json(load<uint8_t>(p));
  if (bits == 16) return is_signed ? json(load<int16_t>(p)) : json(load<uint16_t>(p));
  if (bits == 32) return is_signed ? json(load<int32_t>(p)) : json(load<uint32_t>(p));
  return is_signed ? json(load<int64_t>(p)) : json(load<uint64_t>(p));
}

json value_of(const Array& a, int64_t i) {
  if (is_null(a, i)) return nullptr;
  const Field& f = *a.field;
  if (a.dictionary) {
    const json index = integer_at(a.values.data, i, f.index_bit_width, f.index_signed);
    const size_t entries = a.dictionary->size();
    const bool negative = index.is_number_integer() && !index.is_number_unsigned() && index.get<int64_t>() < 0;
    if (negative || index.get<uint64_t>() >= entries)
      throw Error("dictionary index " + index.dump() + " outside its " + std::to_string(entries) +
                  " values; the file is damaged");
    return (*a.dictionary)[index.get<size_t>()];
  }
  switch (f.type) {
    case kInt: return integer_at(a.values.data, i, f.bit_width, f.is_signed);
    case kFloatingPoint:
      return f.precision == 1 ? json(static_cast<double>(load<float>(a.values.data + 4 * i)))
                              : json(load<double>(a.values.data + 8 * i));
    case kBool: return static_cast<bool>(a.values.data[i >> 3] >> (i & 7) & 1);
    case kUtf8: case kLargeUtf8: {
      const auto [begin, end] = range_of(a, i, a.values.size);
      std::string text(reinterpret_cast<const char*>(a.values.data + begin), end - begin);
      if (!is_valid_utf8(text)) throw Error("a value that is not UTF-8 text; re-encode the column as UTF-8 strings");
      return text;
    }
    case kList: case kLargeList: case kFixedSizeList: {
      const Array& child = a.children.front();
      uint64_t begin = uint64_t(i) * uint64_t(f.list_size), end = begin + uint64_t(f.list_size);
      if (f.type != kFixedSizeList) std::tie(begin, end) = range_of(a, i, static_cast<uint64_t>(child.length));
      json list = json::array();
      for (uint64_t j = begin; j < end; ++j) list.push_back(value_of(child, static_cast<int64_t>(j)));
      return list;
    }
    case kStruct: {
      json object = json::object();
      for (const Array& child : a.children) object[child.field->name] = value_of(child, i);
      return object;
    }
    default: return nullptr;  // kNull; other types are refused before a batch is read
  }
}

}  // namespace

// ---- the file -----------------------------------------------------------------------------------------------

ArrowFile::ArrowFile(std::unique_ptr<Schema> schema) : schema_(std::move(schema)) {}
ArrowFile::~ArrowFile() = default;
ArrowFile::ArrowFile(ArrowFile&&) noexcept = default;
ArrowFile& ArrowFile::operator=(ArrowFile&&) noexcept = default;

const std::string& ArrowFile::path() const { return schema_->path; }

std::vector<std::string> ArrowFile::columns() const {
  std::vector<std::string> names;
  for (const Field& f : schema_->fields) names.push_back(f.name);
  return names;
}

// Calls visit(fb, header, message) for each record batch's metadata in order, and dictionary(fb, header, message)
// for each dictionary batch's; each must read or skip the message's body.
template <typename Visit, typename Dictionary>
void for_each_batch(const Schema& schema, MessageReader& reader, const Visit& visit, const Dictionary& dictionary) {
  Message m;
  while (reader.next(m)) {
    if (m.type == kSchemaMessage) broken(schema.path, "a second schema in one stream");
    if (m.type != kRecordBatch && m.type != kDictionaryBatch) {  // a tensor message, say: nothing of the rows
      reader.skip_body(m);
      continue;
    }
    const flatbuffer::Buffer fb = reader.buffer_of(m);
    const Table header = fb.table(fb.root(), 2);
    if (!header) fb.broken("a batch message without its header");
    if (m.type == kRecordBatch) {
      visit(fb, header, m);
    } else {
      dictionary(fb, header, m);
    }
  }
}

int64_t ArrowFile::rows() const {
  MessageReader reader(schema_->path, schema_->messages_start, schema_->messages_end);
  int64_t rows = 0;
  const auto skip = [&](const flatbuffer::Buffer&, Table, const Message& m) { reader.skip_body(m); };
  for_each_batch(
      *schema_, reader,
      [&](const flatbuffer::Buffer& fb, Table header, const Message& m) {
        rows += std::max<int64_t>(0, fb.scalar<int64_t>(header, 0, 0));
        reader.skip_body(m);
      },
      skip);
  return rows;
}

ArrowFile ArrowFile::open(const std::string& path) {
  auto schema = std::make_unique<Schema>();
  schema->path = path;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(path + ": cannot open the dataset; check the path and permissions");
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  if (size < 8) broken(path, "it is " + std::to_string(size) + " bytes");
  char head[8];
  in.seekg(0);
  in.read(head, 8);
  schema->messages_end = size;
  if (std::memcmp(head, "ARROW1", 6) == 0) {  // the file format: "ARROW1", 2 bytes, the stream, footer, "ARROW1"
    char tail[10];
    in.seekg(static_cast<std::streamoff>(size - std::min<uint64_t>(size, 10)));
    in.read(tail, 10);
    if (size < 18 || std::memcmp(tail + 4, "ARROW1", 6) != 0)
      throw Error(path + ": an Arrow file without its closing \"ARROW1\"; it is truncated (a copy that stopped " +
                  "early?)");
    int32_t footer;
    std::memcpy(&footer, tail, 4);
    if (footer < 0 || static_cast<uint64_t>(footer) > size - 18) broken(path, "a footer longer than the file");
    schema->messages_start = 8;
    schema->messages_end = size - 10 - static_cast<uint64_t>(footer);
  }
  MessageReader reader(path, schema->messages_start, schema->messages_end);
  Message m;
  if (!reader.next(m) || m.type != kSchemaMessage)
    broken(path, "its first message is not a schema");
  const flatbuffer::Buffer fb = reader.buffer_of(m);
  const Table header = fb.table(fb.root(), 2);
  if (!header) fb.broken("a schema message without its schema");
  if (fb.scalar<int16_t>(header, 0, 0) != 0)
    throw Error(path + ": a big-endian Arrow file, which autotrain does not read; rewrite it on a little-endian "
                "machine (pyarrow: pa.ipc.new_stream)");
  const Vector fields = fb.vector(header, 1);
  fb.check_vector(fields, 4);
  uint32_t count = 0;
  for (uint32_t i = 0; i < fields.length; ++i)
    schema->fields.push_back(read_field(fb, fb.table_of(fields, i), 0, count));
  reader.skip_body(m);
  schema->messages_start = reader.at();
  return ArrowFile(std::move(schema));
}

int64_t ArrowFile::for_each_row(const std::vector<std::string>& columns, const RowVisitor& visit) const {
  const std::string& path = schema_->path;
  const std::vector<Field>& fields = schema_->fields;
  std::vector<size_t> field_of;  // columns[c] is fields[field_of[c]]
  std::vector<bool> read(fields.size(), false);
  for (const std::string& name : columns) {
    size_t i = 0;
    while (i < fields.size() && fields[i].name != name) ++i;
    if (i == fields.size()) throw Error(path + ": no column \"" + name + "\"");
    if (const Field* f = unreadable_in(fields[i]))
      throw Error(path + ": column \"" + name + "\" holds " + description_of(*f) +
                  (f == &fields[i] ? "" : " (in \"" + f->name + "\")") + ", which autotrain does not read; " +
                  "cast it to strings (datasets: dataset.cast_column(\"" + name + "\", Value(\"string\"))) or " +
                  "name another column");
    field_of.push_back(i);
    read[i] = true;
  }
  // The dictionaries of the columns read: each dictionary batch replaces one, or adds to it (a delta).
  std::map<int64_t, const Field*> dictionary_fields;
  for (size_t i = 0; i < fields.size(); ++i)
    if (read[i]) collect_dictionaries(fields[i], dictionary_fields);
  Dictionaries dictionaries;
  MessageReader reader(path, schema_->messages_start, schema_->messages_end);
  const auto on_dictionary = [&](const flatbuffer::Buffer& fb, Table header, const Message& m) {
    const int64_t id = fb.scalar<int64_t>(header, 0, 0);  // DictionaryBatch: id, data, isDelta
    const auto found = dictionary_fields.find(id);
    if (found == dictionary_fields.end()) return reader.skip_body(m);  // of a column not read
    const Table data = fb.table(header, 1);
    if (!data) fb.broken("a dictionary batch without its values");
    const std::string body = reader.body(m);
    Batch batch(fb, data, body, path);
    Field values = *found->second;  // the dictionary holds the field's values, not encoded
    values.dictionary = false;
    const Array array = load_array(batch, values, fb, nullptr);
    if (array.length < batch.length()) fb.broken("a dictionary shorter than its batch");
    std::vector<json>& entries = dictionaries[id];
    if (!fb.scalar<uint8_t>(header, 2, 0)) entries.clear();  // a replacement, not a delta
    for (int64_t i = 0; i < batch.length(); ++i) {
      try {
        entries.push_back(value_of(array, i));
      } catch (const Error& e) {
        throw Error(path + ": the dictionary of column \"" + found->second->name + "\", value " +
                    std::to_string(i + 1) + ": " + e.what());
      }
    }
  };
  std::vector<json> cells(columns.size());
  int64_t row = 0;
  for_each_batch(*schema_, reader, [&](const flatbuffer::Buffer& fb, Table header, const Message& m) {
    const std::string body = reader.body(m);
    Batch batch(fb, header, body, path);
    std::vector<Array> arrays(fields.size());
    for (size_t i = 0; i < fields.size(); ++i) {
      if (!read[i]) {
        skip_field(batch, fields[i]);
        continue;
      }
      arrays[i] = load_array(batch, fields[i], fb, &dictionaries);
      if (arrays[i].length < batch.length()) fb.broken("column \"" + fields[i].name + "\" shorter than its batch");
    }
    for (int64_t r = 0; r < batch.length(); ++r) {
      ++row;
      for (size_t c = 0; c < columns.size(); ++c) {
        try {
          cells[c] = value_of(arrays[field_of[c]], r);
        } catch (const Error& e) {
          throw Error(path + ", row " + std::to_string(row) + ": column \"" + columns[c] + "\": " + e.what());
        }
      }
      visit(cells, row);
    }
  }, on_dictionary);
  return row;
}

}  // namespace autotrain
