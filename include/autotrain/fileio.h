// Small file helpers that never leave a half-written output behind.
#pragma once

#include <string>
#include <string_view>

namespace autotrain {

// Reads a whole file; throws Error naming the path when it cannot.
std::string read_file(const std::string& path);

// Writes `contents` to `path` through a temporary file in the same folder, fsync and rename, so a reader
// sees the old file or the new one, never a torn one. Throws Error (disk full, unwritable folder, ...).
void write_file_atomic(const std::string& path, std::string_view contents);

// Creates a folder and its parents; throws Error naming the path when it cannot.
void make_directories(const std::string& path);

}  // namespace autotrain
