// The footer of a Parquet file (parquet.thrift's FileMetaData), read and checked before anything is trusted.
#include <algorithm>
#include <cstring>
#include <fstream>

#include "parquet_format.h"

namespace autotrain {
namespace parquet {

const char* physical_type_name(int type) {
  static const char* names[] = {"BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY",
                                "FIXED_LEN_BYTE_ARRAY"};
  return type >= 0 && type <= 7 ? names[type] : "an unknown type";
}

namespace {

SchemaNode read_schema_element(CompactReader& r) {
  SchemaNode node;
  r.read_struct([&](int16_t id, uint8_t type) {
    switch (id) {
      case 1: node.type = r.i32(); return true;
      case 3: node.repetition = r.i32(); return true;
      case 4: node.name = r.binary(); return true;
      case 5: node.children_count = r.i32(); return true;
      case 6: node.converted = r.i32(); return true;
      case 10:
        r.read_struct([&](int16_t field, uint8_t field_type) {
          node.logical = field;
          r.skip(field_type);
          return true;
        });
        return true;
      default: (void)type; return false;
    }
  });
  return node;
}

ColumnChunk read_column_chunk(CompactReader& r) {
  ColumnChunk chunk;
  bool has_metadata = false;
  r.read_struct([&](int16_t id, uint8_t) {
    if (id == 1) r.fail("a column chunk stored in another file (ColumnChunk.file_path), which is not read");
    if (id == 8 || id == 9) r.fail("an encrypted column, which is not read");
    if (id != 3) return false;
    has_metadata = true;
    r.read_struct([&](int16_t field, uint8_t) {
      switch (field) {
        case 1: chunk.type = r.i32(); return true;
        case 3: r.read_list([&](uint8_t) { chunk.path.push_back(r.binary()); }); return true;
        case 4: chunk.codec = r.i32(); return true;
        case 5: chunk.values = r.i64(); return true;
        case 7: chunk.compressed_size = r.i64(); return true;
        case 9: chunk.data_page_offset = r.i64(); return true;
        case 11: chunk.dictionary_page_offset = r.i64(); return true;
        default: return false;
      }
    });
    return true;
  });
  if (!has_metadata) r.fail("a column chunk without its metadata");
  return chunk;
}

RowGroup read_row_group(CompactReader& r) {
  RowGroup group;
  r.read_struct([&](int16_t id, uint8_t) {
    if (id == 1) r.read_list([&](uint8_t) { group.columns.push_back(read_column_chunk(r)); });
    else if (id == 3) group.rows = r.i64();
    else return false;
    return true;
  });
  return group;
}

}  // namespace

using Metadata = ParquetFile::Metadata;

void refuse(const Metadata& m, const std::string& why) { throw Error(m.path + ": " + why); }

namespace {

// Places the nodes in a tree and gives each its definition and repetition levels (parquet-format's
// "Nested Encoding": each optional or repeated field on the path adds one to the definition level, each repeated
// one to the repetition level).
void build_schema_tree(Metadata& m) {
  if (m.schema.empty()) refuse(m, "the schema is empty; the file is broken");
  std::vector<int> stack = {0};  // nodes still waiting for children
  std::vector<int32_t> waiting = {m.schema[0].children_count};
  for (int i = 1; i < static_cast<int>(m.schema.size()); ++i) {
    while (!stack.empty() && waiting.back() == 0) stack.pop_back(), waiting.pop_back();
    if (stack.empty()) refuse(m, "the schema has more elements than its groups hold; the file is broken");
    SchemaNode& node = m.schema[i];
    const SchemaNode& parent = m.schema[stack.back()];
    --waiting.back();
    node.parent = stack.back();
    node.def = parent.def + (node.repetition != kRequired ? 1 : 0);
    node.rep = parent.rep + (node.repetition == kRepeated ? 1 : 0);
    m.schema[node.parent].children.push_back(i);
    if (node.children_count < 0) refuse(m, "a schema group with a negative count of children; the file is broken");
    if (node.children_count > 0) {
      if (static_cast<int>(stack.size()) > kMaxNesting) refuse(m, "a schema nested too deep");
      stack.push_back(i);
      waiting.push_back(node.children_count);
    } else {
      if (node.type < 0) refuse(m, "schema element \"" + node.name + "\" has neither a type nor children");
      node.leaf = static_cast<int>(m.leaves.size());
      m.leaves.push_back(i);
    }
  }
  for (int32_t left : waiting)
    if (left != 0) refuse(m, "the schema ends inside a group; the file is broken");
  for (int i = static_cast<int>(m.schema.size()) - 1; i > 0; --i) {  // children come after their parent
    SchemaNode& node = m.schema[i];
    if (node.leaf >= 0) node.first_leaf = node.leaf;
    SchemaNode& parent = m.schema[node.parent];
    if (node.first_leaf >= 0 && (parent.first_leaf < 0 || node.first_leaf < parent.first_leaf))
      parent.first_leaf = node.first_leaf;
  }
}

void check_row_groups(const Metadata& m) {
  int64_t rows = 0;
  for (const RowGroup& group : m.row_groups) {
    if (group.columns.size() != m.leaves.size())
      refuse(m, "a row group with " + std::to_string(group.columns.size()) + " columns, the schema has " +
                    std::to_string(m.leaves.size()) + "; the file is broken");
    if (group.rows < 0) refuse(m, "a row group with a negative row count; the file is broken");
    for (size_t c = 0; c < group.columns.size(); ++c) {
      const ColumnChunk& chunk = group.columns[c];
      const SchemaNode& leaf = m.schema[m.leaves[c]];
      if (chunk.type != leaf.type || chunk.path.empty() || chunk.path.back() != leaf.name)
        refuse(m, "column chunk " + std::to_string(c) + " does not match the schema; the file is broken");
      const int64_t start = chunk.first_page_offset();
      if (start < 4 || chunk.compressed_size < 0 || chunk.compressed_size > m.file_size - start ||
          chunk.values < 0)
        refuse(m, "column \"" + leaf.name + "\" has its pages outside the file; the file is truncated or broken");
      // One entry a row for a column outside lists, at least one a row inside them.
      if (leaf.rep == 0 ? chunk.values != group.rows : chunk.values < group.rows)
        refuse(m, "column \"" + leaf.name + "\" has " + std::to_string(chunk.values) + " values for " +
                      std::to_string(group.rows) + " rows; the file is broken");
    }
    rows += group.rows;
  }
  if (rows != m.rows)
    refuse(m, "the row groups hold " + std::to_string(rows) + " rows, the footer says " + std::to_string(m.rows) +
                  "; the file is broken");
}

}  // namespace

std::unique_ptr<Metadata> read_metadata(const std::string& path) {
  auto m = std::make_unique<Metadata>();
  m->path = path;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(path + ": cannot open the dataset; check the path and permissions");
  m->file_size = static_cast<int64_t>(in.tellg());
  const std::string not_parquet = path + ": not a Parquet file (it must start and end with \"PAR1\")";
  if (m->file_size < 12) throw Error(not_parquet + ": it is " + std::to_string(m->file_size) + " bytes");
  char head[4], tail[8];
  in.seekg(0);
  in.read(head, 4);
  in.seekg(m->file_size - 8);
  in.read(tail, 8);
  if (!in) throw Error(path + ": read failed");
  if (std::memcmp(tail + 4, "PARE", 4) == 0)
    throw Error(path + ": an encrypted Parquet file, which autotrain does not read; write it unencrypted");
  if (std::memcmp(head, "PAR1", 4) != 0 || std::memcmp(tail + 4, "PAR1", 4) != 0)
    throw Error(not_parquet + "; a download that stopped early ends without it");
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length |= uint32_t(uint8_t(tail[i])) << (8 * i);
  if (length > static_cast<uint64_t>(m->file_size - 12))
    throw Error(path + ": the footer's length (" + std::to_string(length) +
                " bytes) is larger than the file; the file is truncated or broken");
  std::string footer(length, '\0');
  in.seekg(m->file_size - 8 - length);
  in.read(footer.data(), length);
  if (!in) throw Error(path + ": read failed");
  const std::string what = path + ": the footer";
  CompactReader r(reinterpret_cast<const uint8_t*>(footer.data()), footer.size(), what);
  r.read_struct([&](int16_t id, uint8_t) {
    switch (id) {
      case 2: r.read_list([&](uint8_t) { m->schema.push_back(read_schema_element(r)); }); return true;
      case 3: m->rows = r.i64(); return true;
      case 4: r.read_list([&](uint8_t) { m->row_groups.push_back(read_row_group(r)); }); return true;
      default: return false;
    }
  });
  build_schema_tree(*m);
  check_row_groups(*m);
  return m;
}

}  // namespace parquet
}  // namespace autotrain
