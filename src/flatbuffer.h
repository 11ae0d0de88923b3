// FlatBuffers read without generated code, every offset checked: the encoding of Arrow IPC's metadata (google/
// flatbuffers, docs "FlatBuffers internals"). A buffer starts with the offset of its root table; a table starts
// with the signed distance back to its vtable; the vtable lists its size, the table's size and each field's
// offset in the table (0: absent, the schema's default). Offsets to tables, vectors and strings are unsigned and
// relative to where they are stored; a vector or string is its length then its elements. Little-endian
// throughout. Internal to src/.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "autotrain/error.h"

namespace autotrain {
namespace flatbuffer {

class Buffer;

// A table: its position in the buffer (0 when absent).
struct Table {
  size_t at = 0;
  explicit operator bool() const { return at != 0; }
};

// A vector: where its first element is and how many it holds.
struct Vector {
  size_t at = 0;
  uint32_t length = 0;
};

class Buffer {
 public:
  // `what` names the file and message for errors ("train.arrow: a record batch's metadata").
  Buffer(const uint8_t* data, size_t size, std::string what) : data_(data), size_(size), what_(std::move(what)) {}

  Table root() const { return table_at(0); }

  // Scalars: the field's value, or `fallback` when the table leaves it out.
  template <typename T>
  T scalar(Table t, int field, T fallback) const {
    const size_t at = field_at(t, field);
    return at ? read<T>(at) : fallback;
  }
  Table table(Table t, int field) const {
    const size_t at = field_at(t, field);
    return at ? table_at(at) : Table{};
  }
  Vector vector(Table t, int field) const {
    const size_t at = field_at(t, field);
    if (!at) return {};
    const size_t start = offset_at(at);
    const uint32_t length = read<uint32_t>(start);
    return {start + 4, length};
  }
  std::string string(Table t, int field) const {
    const Vector v = vector(t, field);
    check(v.at, v.length);
    return std::string(reinterpret_cast<const char*>(data_ + v.at), v.length);
  }
  // The i-th table of a vector of tables.
  Table table_of(Vector v, uint32_t i) const { return table_at(v.at + 4 * size_t(i)); }
  // The i-th struct of `width` bytes of a vector of structs, and a scalar `offset` bytes into it.
  template <typename T>
  T struct_field(Vector v, uint32_t i, size_t width, size_t offset) const {
    return read<T>(v.at + width * i + offset);
  }
  // Checks that a vector of `width`-byte elements lies inside the buffer.
  void check_vector(Vector v, size_t width) const { check(v.at, width * v.length); }

  const std::string& what() const { return what_; }
  [[noreturn]] void broken(const std::string& why) const {
    throw Error(what_ + " is broken (" + why + "); the file is damaged or not Arrow IPC");
  }

 private:
  void check(size_t at, size_t n) const {
    if (at > size_ || n > size_ - at) broken("an offset past its end");
  }
  template <typename T>
  T read(size_t at) const {
    check(at, sizeof(T));
    T value;
    std::memcpy(&value, data_ + at, sizeof(T));
    return value;
  }
  size_t offset_at(size_t at) const { return at + read<uint32_t>(at); }
  Table table_at(size_t at) const {
    const size_t table = offset_at(at);
    if (table == 0) broken("a table at offset 0");
    const int64_t vtable = static_cast<int64_t>(table) - read<int32_t>(table);
    if (vtable < 0 || static_cast<size_t>(vtable) >= size_) broken("a table's vtable outside it");
    const uint16_t vtable_size = read<uint16_t>(static_cast<size_t>(vtable));
    if (vtable_size < 4 || vtable_size % 2) broken("a vtable of " + std::to_string(vtable_size) + " bytes");
    check(static_cast<size_t>(vtable), vtable_size);
    return {table};
  }
  // Where field `field` of `t` is stored, or 0 when absent.
  size_t field_at(Table t, int field) const {
    if (!t) return 0;
    const size_t vtable = static_cast<size_t>(static_cast<int64_t>(t.at) - read<int32_t>(t.at));
    const uint16_t vtable_size = read<uint16_t>(vtable);
    const size_t entry = 4 + 2 * static_cast<size_t>(field);
    if (entry + 2 > vtable_size) return 0;
    const uint16_t offset = read<uint16_t>(vtable + entry);
    return offset ? t.at + offset : 0;
  }

  const uint8_t* data_;
  size_t size_;
  std::string what_;
};

}  // namespace flatbuffer
}  // namespace autotrain
