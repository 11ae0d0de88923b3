// Parquet files read for their text columns (see parquet.h). The layout (apache/parquet-format, README.md and
// parquet.thrift): "PAR1", column chunks of pages, the footer (FileMetaData in Thrift's compact protocol), its
// length as 4 bytes, "PAR1". The footer is read in parquet_metadata.cpp; here the pages of the columns asked for
// are decoded and their levels put back together into rows. Every length and count read from the file is
// checked before it is trusted.
#include "autotrain/parquet.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/text_util.h"
#include "parquet_format.h"

namespace autotrain {
using json = nlohmann::ordered_json;

using namespace parquet;  // the format's parts (parquet_format.h)
using Metadata = ParquetFile::Metadata;

namespace {

// A page may hold at most this many values: far above what writers put in one (pyarrow, parquet-mr, arrow-rs:
// 20,000 rows a page), and few enough that one corrupt count asks for a few hundred MB at most.
constexpr int64_t kMaxPageValues = int64_t(1) << 24;

// ---- values -------------------------------------------------------------------------------------------------

// Bytes with a cursor; running past the end is an error naming the page.
struct Bytes {
  const uint8_t* data;
  size_t size, at = 0;
  const std::string& what;
  size_t left() const { return size - at; }
  const uint8_t* take(size_t n) {
    if (n > left()) throw Error(what + ": a page ends before its values do; the file is truncated or broken");
    const uint8_t* p = data + at;
    at += n;
    return p;
  }
  uint64_t varint() {
    uint64_t value = 0;
    const Varint read = read_varint(data, size, at, value);
    if (read == Varint::ended) take(1);  // the error of a page that ends early
    if (read == Varint::too_long) throw Error(what + ": a number longer than 64 bits in a page; the file is broken");
    return value;
  }
  int64_t zigzag() { return zigzag_decode(varint()); }
  uint32_t u32() {
    const uint8_t* p = take(4);
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  }
};

// `count` values of `width` bits each, packed from the least significant bit (parquet-format's bit-packing of
// the RLE / bit-packing hybrid and of DELTA_BINARY_PACKED's miniblocks).
template <typename T>
void unpack_bits(const uint8_t* p, int width, size_t count, std::vector<T>& out) {
  for (size_t i = 0; i < count; ++i) {
    uint64_t value = 0;
    const size_t bit = i * width;
    for (int b = 0; b < width; ++b) {
      const size_t at = bit + b;
      value |= uint64_t((p[at / 8] >> (at % 8)) & 1) << b;
    }
    out.push_back(static_cast<T>(value));
  }
}

// The RLE / bit-packing hybrid (parquet-format Encodings.md): `count` values of `width` bits appended to `out`.
template <typename T>
void decode_hybrid(Bytes& in, int width, size_t count, std::vector<T>& out) {
  if (width < 0 || width > 32)
    throw Error(in.what + ": a bit width of " + std::to_string(width) + "; the file is broken");
  const size_t end = out.size() + count;
  while (out.size() < end) {
    const uint64_t header = in.varint();
    if (header & 1) {  // bit-packed: (header >> 1) groups of 8 values
      const uint64_t groups = header >> 1;
      if (groups > in.left())
        throw Error(in.what + ": a page ends before its values do; the file is truncated or broken");
      const uint8_t* p = in.take(groups * width);
      unpack_bits(p, width, std::min<size_t>(groups * 8, end - out.size()), out);
    } else {  // a run: (header >> 1) copies of one value in ceil(width / 8) bytes
      const uint8_t* p = in.take((width + 7) / 8);
      uint64_t value = 0;
      for (int b = 0; b < (width + 7) / 8; ++b) value |= uint64_t(p[b]) << (8 * b);
      out.insert(out.end(), std::min<uint64_t>(header >> 1, end - out.size()), static_cast<T>(value));
    }
  }
}

// DELTA_BINARY_PACKED: `count` integers (a block header, then blocks of miniblocks of bit-packed deltas).
std::vector<int64_t> decode_delta_binary(Bytes& in, size_t count) {
  const uint64_t block = in.varint(), miniblocks = in.varint(), total = in.varint();
  uint64_t value = static_cast<uint64_t>(in.zigzag());
  if (block == 0 || block > (1u << 20) || block % 128 != 0 || miniblocks == 0 || block % miniblocks != 0 ||
      (block / miniblocks) % 32 != 0 || total < count)
    throw Error(in.what + ": a DELTA_BINARY_PACKED header that does not add up; the file is broken");
  const uint64_t per_miniblock = block / miniblocks;
  std::vector<int64_t> values;
  if (count == 0) return values;
  values.push_back(static_cast<int64_t>(value));
  std::vector<uint64_t> deltas;
  while (values.size() < count) {
    const uint64_t min_delta = static_cast<uint64_t>(in.zigzag());
    const uint8_t* widths = in.take(miniblocks);
    for (uint64_t b = 0; b < miniblocks && values.size() < count; ++b) {
      if (widths[b] > 64) throw Error(in.what + ": a miniblock bit width above 64; the file is broken");
      deltas.clear();
      unpack_bits(in.take(per_miniblock * widths[b] / 8), widths[b], per_miniblock, deltas);
      for (uint64_t d = 0; d < per_miniblock && values.size() < count; ++d) {
        value += min_delta + deltas[d];  // wraps as the format's two's complement arithmetic does
        values.push_back(static_cast<int64_t>(value));
      }
    }
  }
  return values;
}

std::string text_value(std::string s, const std::string& what) {
  if (!is_valid_utf8(s))
    throw Error(what + ": a value that is not UTF-8 text; re-encode the column as UTF-8 strings");
  return s;
}

// `count` values of a leaf column in `encoding`, appended to `out` as JSON.
void decode_values(Bytes& in, int type, int encoding, size_t count, const std::vector<json>* dictionary,
                   std::vector<json>& out) {
  const std::string& what = in.what;
  enum { kPlain = 0, kPlainDictionary = 2, kRle = 3, kDeltaBinary = 5, kDeltaLength = 6, kDeltaByteArray = 7,
         kRleDictionary = 8 };
  if (encoding == kPlainDictionary || encoding == kRleDictionary) {
    if (!dictionary) throw Error(what + ": a dictionary-encoded page without a dictionary page; the file is broken");
    std::vector<uint32_t> indices;
    if (count > 0) decode_hybrid(in, *in.take(1), count, indices);
    for (uint32_t index : indices) {
      if (index >= dictionary->size()) throw Error(what + ": a dictionary index out of range; the file is broken");
      out.push_back((*dictionary)[index]);
    }
    return;
  }
  if (type == kByteArray && encoding == kPlain) {
    for (size_t i = 0; i < count; ++i) {
      const uint32_t n = in.u32();
      out.push_back(text_value(std::string(reinterpret_cast<const char*>(in.take(n)), n), what));
    }
    return;
  }
  if (type == kByteArray && (encoding == kDeltaLength || encoding == kDeltaByteArray)) {
    std::vector<int64_t> prefixes;
    if (encoding == kDeltaByteArray) prefixes = decode_delta_binary(in, count);
    const std::vector<int64_t> lengths = decode_delta_binary(in, count);
    std::string previous;
    for (size_t i = 0; i < count; ++i) {
      const int64_t prefix = prefixes.empty() ? 0 : prefixes[i];
      if (lengths[i] < 0 || prefix < 0 || static_cast<size_t>(prefix) > previous.size())
        throw Error(what + ": a DELTA byte-array length out of range; the file is broken");
      std::string value = previous.substr(0, static_cast<size_t>(prefix));
      value.append(reinterpret_cast<const char*>(in.take(static_cast<size_t>(lengths[i]))),
                   static_cast<size_t>(lengths[i]));
      previous = text_value(std::move(value), what);
      out.push_back(previous);
    }
    return;
  }
  if (type == kBoolean && (encoding == kPlain || encoding == kRle)) {
    std::vector<uint8_t> bits;
    if (encoding == kPlain) {
      unpack_bits(in.take((count + 7) / 8), 1, count, bits);
    } else {
      const uint32_t n = in.u32();
      Bytes run{in.take(n), n, 0, what};
      decode_hybrid(run, 1, count, bits);
    }
    for (uint8_t bit : bits) out.push_back(bit != 0);
    return;
  }
  if ((type == kInt32 || type == kInt64) && encoding == kDeltaBinary) {
    for (int64_t v : decode_delta_binary(in, count)) out.push_back(type == kInt32 ? static_cast<int32_t>(v) : v);
    return;
  }
  if (encoding == kPlain && (type == kInt32 || type == kInt64 || type == kFloat || type == kDouble64)) {
    const size_t width = type == kInt32 || type == kFloat ? 4 : 8;
    for (size_t i = 0; i < count; ++i) {
      const uint8_t* p = in.take(width);
      if (type == kInt32) { int32_t v; std::memcpy(&v, p, 4); out.push_back(v); }
      else if (type == kInt64) { int64_t v; std::memcpy(&v, p, 8); out.push_back(v); }
      else if (type == kFloat) { float v; std::memcpy(&v, p, 4); out.push_back(v); }
      else { double v; std::memcpy(&v, p, 8); out.push_back(v); }
    }
    return;
  }
  throw Error(what + ": " + physical_type_name(type) + " values in encoding " + std::to_string(encoding) +
              ", which autotrain does not read; rewrite the file with pyarrow's defaults (pq.write_table)");
}

// ---- pages --------------------------------------------------------------------------------------------------

enum PageType { kDataPage = 0, kIndexPage = 1, kDictionaryPage = 2, kDataPageV2 = 3 };

struct PageHeader {
  int type = -1;
  int32_t uncompressed = -1, compressed = -1;
  int32_t values = 0, encoding = 0, def_encoding = 3, rep_encoding = 3;  // v1 and dictionary pages
  int32_t def_bytes = 0, rep_bytes = 0;                                 // v2
  bool compressed_values = true;                                        // v2
};

PageHeader read_page_header(CompactReader& r) {
  PageHeader h;
  r.read_struct([&](int16_t id, uint8_t) {
    switch (id) {
      case 1: h.type = r.i32(); return true;
      case 2: h.uncompressed = r.i32(); return true;
      case 3: h.compressed = r.i32(); return true;
      case 5: case 7:  // DataPageHeader, DictionaryPageHeader
        r.read_struct([&](int16_t field, uint8_t) {
          switch (field) {
            case 1: h.values = r.i32(); return true;
            case 2: h.encoding = r.i32(); return true;
            case 3: if (id == 5) h.def_encoding = r.i32(); else return false; return true;
            case 4: if (id == 5) h.rep_encoding = r.i32(); else return false; return true;
            default: return false;
          }
        });
        return true;
      case 8:  // DataPageHeaderV2
        r.read_struct([&](int16_t field, uint8_t field_type) {
          switch (field) {
            case 1: h.values = r.i32(); return true;
            case 4: h.encoding = r.i32(); return true;
            case 5: h.def_bytes = r.i32(); return true;
            case 6: h.rep_bytes = r.i32(); return true;
            case 7: h.compressed_values = field_type == kTrue; return true;
            default: return false;
          }
        });
        return true;
      default: return false;
    }
  });
  if (h.uncompressed < 0 || h.compressed < 0 || h.values < 0 || h.values > kMaxPageValues || h.def_bytes < 0 ||
      h.rep_bytes < 0)
    r.fail("a page header with a size or count out of range");
  return h;
}

// One leaf column of one row group: a repetition and a definition level per entry, a value per entry whose
// definition level is the leaf's (the others are nulls or empty lists above it).
struct LeafValues {
  std::vector<uint8_t> rep, def;
  std::vector<json> values;
};

int bit_width(int max_level) {
  int width = 0;
  while ((1 << width) <= max_level) ++width;
  return width;
}

// `count` levels in the hybrid encoding (v2 pages store them so), all 0 for a level that is always 0 (nothing
// stored).
void read_levels(Bytes& levels, int max_level, size_t count, std::vector<uint8_t>& out) {
  if (max_level == 0) {
    out.insert(out.end(), count, 0);
    return;
  }
  decode_hybrid(levels, bit_width(max_level), count, out);
}

// Levels of a v1 data page: a 4-byte length, then the hybrid encoding.
void read_levels_v1(Bytes& page, int encoding, int max_level, size_t count, std::vector<uint8_t>& out) {
  if (max_level > 0 && encoding != 3)
    throw Error(page.what + ": levels in the deprecated BIT_PACKED encoding, which autotrain does not read; rewrite "
                "the file with pyarrow");
  if (max_level == 0) return read_levels(page, max_level, count, out);
  const uint32_t n = page.u32();
  Bytes levels{page.take(n), n, 0, page.what};
  read_levels(levels, max_level, count, out);
}

void check_levels(const std::vector<uint8_t>& levels, size_t from, int max_level, const std::string& what) {
  for (size_t i = from; i < levels.size(); ++i)
    if (levels[i] > max_level) throw Error(what + ": a level above the schema's; the file is broken");
}

// The pages of one column chunk, read from the file and decoded one at a time: a row group then takes a page or
// two of each column read in memory, not the whole group (pyarrow writes up to 1 Mi rows a group by default).
class PageReader {
 public:
  PageReader(const Metadata& m, const ColumnChunk& chunk, const SchemaNode& leaf, std::ifstream& in)
      : m_(m), chunk_(chunk), leaf_(leaf), in_(in), what_(m.path + ": column \"" + join(chunk.path, ".") + "\""),
        at_(chunk.first_page_offset()), end_(at_ + chunk.compressed_size), left_(chunk.values) {}

  // Appends the next data page's levels and values to `out`; false when the chunk has no values left.
  bool next_page(LeafValues& out) {
    while (left_ > 0) {
      std::string body;
      const PageHeader h = read_page(body);
      const auto* data = reinterpret_cast<const uint8_t*>(body.data());
      if (h.type == kDictionaryPage) {
        const std::string page = decompress_page(chunk_.codec, data, body.size(), h.uncompressed, what_);
        Bytes values{reinterpret_cast<const uint8_t*>(page.data()), page.size(), 0, what_};
        dictionary_.clear();
        decode_values(values, leaf_.type, 0, static_cast<size_t>(h.values), nullptr, dictionary_);  // always PLAIN
        has_dictionary_ = true;
        continue;
      }
      if (h.type != kDataPage && h.type != kDataPageV2) continue;  // index pages and others carry no values
      decode_data_page(h, data, out);
      left_ -= h.values;
      return true;
    }
    return false;
  }

 private:
  // Page headers are read from a window of this many bytes, widened when a header runs past it (statistics of long
  // strings can make one long).
  static constexpr int64_t kHeaderWindow = 4096;

  std::string read_bytes(int64_t at, int64_t n) {
    std::string bytes(static_cast<size_t>(n), '\0');
    in_.seekg(at);
    in_.read(bytes.data(), static_cast<std::streamsize>(n));
    if (!in_) throw Error(m_.path + ": read failed (column \"" + join(chunk_.path, ".") + "\")");
    return bytes;
  }

  // The next page's header, and its bytes (compressed) in `body`; moves past both.
  PageHeader read_page(std::string& body) {
    if (at_ >= end_)
      throw Error(what_ + ": the column ends before its " + std::to_string(chunk_.values) + " values; the file is "
                  "truncated or broken");
    for (int64_t window = std::min(end_ - at_, kHeaderWindow);; window = std::min(end_ - at_, window * 4)) {
      const std::string bytes = read_bytes(at_, window);
      CompactReader r(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), what_);
      PageHeader h;
      try {
        h = read_page_header(r);
      } catch (const Error&) {
        if (window == end_ - at_) throw;
        continue;  // the header may run past the window
      }
      const int64_t header = static_cast<int64_t>(r.position());
      if (h.compressed < 0 || h.compressed > end_ - at_ - header) r.fail("a page longer than its column");
      body = read_bytes(at_ + header, h.compressed);
      at_ += header + h.compressed;
      return h;
    }
  }

  // A data page's levels and values, appended to `out`.
  void decode_data_page(const PageHeader& h, const uint8_t* body, LeafValues& out) {
    if (h.values > left_) throw Error(what_ + ": a page holds more values than its column; the file is broken");
    const size_t count = static_cast<size_t>(h.values), first = out.def.size();
    std::string page;
    if (h.type == kDataPage) {
      page = decompress_page(chunk_.codec, body, h.compressed, h.uncompressed, what_);
    } else {  // v2: the levels first, never compressed; then the values, compressed unless is_compressed is false
      const size_t level_bytes = size_t(h.rep_bytes) + size_t(h.def_bytes);
      if (level_bytes > size_t(h.compressed) || level_bytes > size_t(h.uncompressed))
        throw Error(what_ + ": a v2 page whose levels are longer than the page; the file is broken");
      Bytes rep{body, size_t(h.rep_bytes), 0, what_}, def{body + h.rep_bytes, size_t(h.def_bytes), 0, what_};
      read_levels(rep, leaf_.rep, count, out.rep);
      read_levels(def, leaf_.def, count, out.def);
      page = decompress_page(h.compressed_values ? chunk_.codec : 0, body + level_bytes, h.compressed - level_bytes,
                             h.uncompressed - level_bytes, what_);
    }
    Bytes values{reinterpret_cast<const uint8_t*>(page.data()), page.size(), 0, what_};
    if (h.type == kDataPage) {
      read_levels_v1(values, h.rep_encoding, leaf_.rep, count, out.rep);
      read_levels_v1(values, h.def_encoding, leaf_.def, count, out.def);
    }
    check_levels(out.rep, first, leaf_.rep, what_);
    check_levels(out.def, first, leaf_.def, what_);
    const auto present = static_cast<size_t>(
        std::count(out.def.begin() + static_cast<std::ptrdiff_t>(first), out.def.end(), leaf_.def));
    decode_values(values, leaf_.type, h.encoding, present, has_dictionary_ ? &dictionary_ : nullptr, out.values);
  }

  const Metadata& m_;
  const ColumnChunk& chunk_;
  const SchemaNode& leaf_;
  std::ifstream& in_;
  const std::string what_;
  int64_t at_, end_, left_;  // the next page, the chunk's end, the values not yet read
  std::vector<json> dictionary_;
  bool has_dictionary_ = false;
};

// ---- rows: the leaves' levels put back together as JSON (parquet-format's "Nested Encoding", for paths with at
// most one repeated field) ----------------------------------------------------------------------------------------

class RowAssembler {
 public:
  // pages[leaf]: the pages of each leaf read (null for the others).
  RowAssembler(const Metadata& m, std::vector<std::unique_ptr<PageReader>>& pages)
      : m_(m), pages_(pages), leaves_(pages.size()), spans_(pages.size()) {}

  // Moves each leaf's cursor over the next row's entries, reading pages as they are needed.
  void next_row(const std::vector<int>& leaf_indices) {
    for (int leaf : leaf_indices) {
      Span& span = spans_[leaf];
      LeafValues& values = leaves_[leaf];
      drop_read_entries(leaf);
      span.begin = span.end;
      while (span.begin >= values.def.size() && pages_[leaf]->next_page(values)) {
      }
      if (span.begin >= values.def.size() || values.rep[span.begin] != 0)
        throw Error(m_.path + ": column \"" + m_.schema[m_.leaves[leaf]].name + "\" has fewer entries than its rows; "
                    "the file is broken");
      span.end = span.begin + 1;
      for (;;) {  // a row's entries may go on into the next page (v1 pages need not end at a row)
        while (span.end < values.def.size() && values.rep[span.end] != 0) ++span.end;
        if (span.end < values.def.size() || !pages_[leaf]->next_page(values)) break;
      }
      span.value_index.clear();
      const int max_def = m_.schema[m_.leaves[leaf]].def;
      for (size_t e = span.begin; e < span.end; ++e)
        span.value_index.push_back(values.def[e] == max_def ? static_cast<int64_t>(span.value_end++) : -1);
      if (span.value_end > values.values.size())
        throw Error(m_.path + ": column \"" + m_.schema[m_.leaves[leaf]].name + "\" has fewer values than its "
                    "levels say; the file is broken");
    }
  }
  bool leaf_finished(int leaf) {
    return spans_[leaf].end == leaves_[leaf].def.size() && !pages_[leaf]->next_page(leaves_[leaf]);
  }

  // The value of `node` at entry `entry` of the row (0 outside a list).
  json value_of(int node_index, size_t entry) {
    const SchemaNode& node = m_.schema[node_index];
    if (node.repetition == kRepeated) return list_of(node_index);
    if (definition(node, entry) < node.def) return nullptr;
    if (node.leaf >= 0) return value_at(node.leaf, entry);
    if (node.is_list() && node.children.size() == 1 && m_.schema[node.children[0]].repetition == kRepeated)
      return list_of(node.children[0]);
    return object_of(node, entry);
  }

 private:
  struct Span {
    size_t begin = 0, end = 0, value_end = 0;
    std::vector<int64_t> value_index;  // per entry of the row: its value's index, or -1
  };

  // Frees the entries and values of the rows already put together, once they are at least half of those held (so
  // each entry is moved at most once on average).
  void drop_read_entries(int leaf) {
    Span& span = spans_[leaf];
    LeafValues& values = leaves_[leaf];
    if (span.end < 4096 || 2 * span.end < values.def.size()) return;
    const auto entries = static_cast<std::ptrdiff_t>(span.end);
    values.rep.erase(values.rep.begin(), values.rep.begin() + entries);
    values.def.erase(values.def.begin(), values.def.begin() + entries);
    values.values.erase(values.values.begin(), values.values.begin() + static_cast<std::ptrdiff_t>(span.value_end));
    span.begin = span.end = span.value_end = 0;
  }

  // The leaves of one list must agree on its length in every row; a file where they do not is refused here.
  const Span& span_at(int leaf, size_t entry) const {
    const Span& span = spans_[leaf];
    if (entry >= span.end - span.begin)
      throw Error(m_.path + ": the columns of one list disagree on its length (column \"" +
                  m_.schema[m_.leaves[leaf]].name + "\"); the file is broken");
    return span;
  }
  int definition(const SchemaNode& node, size_t entry) const {
    return leaves_[node.first_leaf].def[span_at(node.first_leaf, entry).begin + entry];
  }
  // The value of a leaf at an entry: null where its definition level stops short of the leaf.
  json value_at(int leaf, size_t entry) {
    const int64_t index = span_at(leaf, entry).value_index[entry];
    return index < 0 ? json(nullptr) : std::move(leaves_[leaf].values[static_cast<size_t>(index)]);
  }

  // The repeated field `node` as an array of its elements, one per entry of the row.
  json list_of(int node_index) {
    const SchemaNode& node = m_.schema[node_index];
    json array = json::array();
    if (definition(node, 0) < node.def) return array;  // the list is empty (its parent was checked present)
    const Span& span = spans_[node.first_leaf];
    for (size_t entry = 0; entry < span.end - span.begin; ++entry) array.push_back(element_of(node_index, entry));
    return array;
  }

  // An element of a repeated field (parquet-format LogicalTypes.md, "Lists", with its backward-compatibility
  // rules): a repeated scalar is the element; a repeated group of one field is the element's wrapper, unless
  // named "array" or "<list>_tuple"; a repeated group of several fields is the element.
  json element_of(int node_index, size_t entry) {
    const SchemaNode& node = m_.schema[node_index];
    if (node.leaf >= 0) return value_at(node.leaf, entry);
    const std::string parent = node.parent > 0 ? m_.schema[node.parent].name : "";
    if (node.children.size() == 1 && node.name != "array" && node.name != parent + "_tuple")
      return value_of(node.children[0], entry);
    return object_of(node, entry);
  }

  // A group as a struct: its fields by name, at `entry`.
  json object_of(const SchemaNode& node, size_t entry) {
    json object = json::object();
    for (int child : node.children) object[m_.schema[child].name] = value_of(child, entry);
    return object;
  }

  const Metadata& m_;
  std::vector<std::unique_ptr<PageReader>>& pages_;
  std::vector<LeafValues> leaves_;  // per leaf read: the entries of its pages not yet dropped
  std::vector<Span> spans_;
};

// The leaves under `node`, refusing the shapes RowAssembler does not put together.
void collect_leaves(const Metadata& m, int node_index, const std::string& column, std::vector<int>& leaves) {
  const SchemaNode& node = m.schema[node_index];
  if (node.is_map())
    refuse(m, "column \"" + column + "\" holds a map, which autotrain does not read; store it as a list of structs");
  if (node.leaf >= 0) {
    if (node.rep > 1)
      refuse(m, "column \"" + column + "\" holds lists inside lists, which autotrain does not read");
    if (node.type == kInt96 || node.type == kFixedLenByteArray)
      refuse(m, "column \"" + column + "\" holds " + physical_type_name(node.type) +
                    " values, which autotrain does not read; keep text, numbers and booleans in the columns it reads");
    leaves.push_back(node.leaf);
    return;
  }
  for (int child : node.children) collect_leaves(m, child, column, leaves);
}

}  // namespace

ParquetFile::ParquetFile(std::unique_ptr<Metadata> metadata) : metadata_(std::move(metadata)) {}
ParquetFile::~ParquetFile() = default;
ParquetFile::ParquetFile(ParquetFile&&) noexcept = default;
ParquetFile& ParquetFile::operator=(ParquetFile&&) noexcept = default;

ParquetFile ParquetFile::open(const std::string& path) { return ParquetFile(read_metadata(path)); }

const std::string& ParquetFile::path() const { return metadata_->path; }
int64_t ParquetFile::rows() const { return metadata_->rows; }

std::vector<std::string> ParquetFile::columns() const {
  std::vector<std::string> names;
  for (int child : metadata_->schema[0].children) names.push_back(metadata_->schema[child].name);
  return names;
}

int64_t ParquetFile::for_each_row(const std::vector<std::string>& columns, const RowVisitor& visit) const {
  const Metadata& m = *metadata_;
  std::vector<int> nodes, leaf_indices;
  for (const std::string& column : columns) {
    const auto& top = m.schema[0].children;
    const auto it = std::find_if(top.begin(), top.end(), [&](int c) { return m.schema[c].name == column; });
    if (it == top.end()) refuse(m, "no column \"" + column + "\"");
    nodes.push_back(*it);
    collect_leaves(m, *it, column, leaf_indices);
  }
  std::sort(leaf_indices.begin(), leaf_indices.end());
  leaf_indices.erase(std::unique(leaf_indices.begin(), leaf_indices.end()), leaf_indices.end());

  std::ifstream in(m.path, std::ios::binary);
  if (!in) throw Error(m.path + ": cannot open the dataset");
  int64_t row = 0;
  std::vector<json> cells(nodes.size());
  for (const RowGroup& group : m.row_groups) {
    std::vector<std::unique_ptr<PageReader>> pages(m.leaves.size());
    for (int leaf : leaf_indices)
      pages[leaf] = std::make_unique<PageReader>(m, group.columns[leaf], m.schema[m.leaves[leaf]], in);
    RowAssembler rows(m, pages);
    for (int64_t r = 0; r < group.rows; ++r) {
      rows.next_row(leaf_indices);
      for (size_t c = 0; c < nodes.size(); ++c) cells[c] = rows.value_of(nodes[c], 0);
      visit(cells, ++row);
    }
    for (int leaf : leaf_indices)
      if (!rows.leaf_finished(leaf))
        refuse(m, "column \"" + m.schema[m.leaves[leaf]].name + "\" has more entries than its rows; the file is "
                  "broken");
  }
  return row;
}

}  // namespace autotrain
