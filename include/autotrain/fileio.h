// Small file helpers that never leave a half-written output behind.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace autotrain {

// Reads a whole file; throws Error naming the path when it cannot.
std::string read_file(const std::string& path);

// Reads and parses a JSON file. Malformed JSON throws one line naming the file, the byte where parsing stopped (or
// the number out of range) and `what_to_do` ("copy it again from the base model").
nlohmann::json parse_json_file(const std::string& path, const std::string& what_to_do);

// Writes `contents` to `path` through a temporary file in the same folder, fsync and rename, so a reader
// sees the old file or the new one, never a torn one. Throws Error (disk full, unwritable folder, ...).
void write_file_atomic(const std::string& path, std::string_view contents);

// The same, streamed: write() pieces into a temporary file next to `path`; commit() fsyncs and renames.
// Destroyed without commit() (an exception on the way), it removes the temporary file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(std::string_view data);
  void write(const void* data, size_t size) { write(std::string_view(static_cast<const char*>(data), size)); }
  void commit();

 private:
  std::string path_;
  std::string temporary_;
  int fd_ = -1;
};

// Creates a folder and its parents; throws Error naming the path when it cannot.
void make_directories(const std::string& path);

}  // namespace autotrain
