// Dataset files compressed whole, as `datasets` reads them (train.jsonl.gz, part-0.json.zst): which codec a file's
// name ends in, and its bytes decompressed as a stream. Internal to src/ (data.cpp, token_cache.cpp).
#pragma once

#include <cstdint>
#include <istream>
#include <memory>
#include <string>

namespace autotrain {

enum class FileCompression { none, gzip, zstd };

// By the name's last suffix: ".gz" gzip, ".zst" / ".zstd" zstd (case-insensitive), else none.
FileCompression compression_of(const std::string& path);

// The name without its compression suffix ("train.jsonl.gz" -> "train.jsonl").
std::string without_compression_suffix(const std::string& path);

// A stream of the file's decompressed bytes (gzip files of several members and zstd files of several frames read
// whole). A corrupt or truncated file throws Error naming it from the read that meets the damage (the stream has
// badbit in its exceptions, so the Error passes through istream's functions).
std::unique_ptr<std::istream> open_decompressed(const std::string& path);

// The decompressed size as the file states it (gzip's last member's ISIZE when the file has one member and is
// under 4 GiB, zstd's first frame's content size), or 0 when it does not: for progress bars only.
int64_t stated_decompressed_size(const std::string& path);

}  // namespace autotrain
