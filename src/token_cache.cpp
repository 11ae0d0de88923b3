#include "autotrain/token_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/logging.h"
#include "autotrain/progress.h"
#include "compressed_file.h"
#include "ordered_batches.h"

namespace autotrain {
namespace {

constexpr char kMagic[8] = {'A', 'T', 'T', 'O', 'K', 'E', 'N', '1'};
constexpr char kEndMagic[8] = {'A', 'T', 'T', 'O', 'K', 'E', 'N', 'D'};
constexpr uint64_t kFnvOffset = 14695981039346656037ull, kFnvPrime = 1099511628211ull;

void fnv1a(uint64_t& hash, const char* data, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= kFnvPrime;
  }
}

}  // namespace

std::string fingerprint(const std::vector<std::string>& files, const std::string& extra) {
  uint64_t hash = kFnvOffset;
  std::vector<char> buffer(1 << 20);
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open to fingerprint it; check the path and permissions");
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      fnv1a(hash, buffer.data(), static_cast<size_t>(in.gcount()));
    }
    const char separator = '\0';
    fnv1a(hash, &separator, 1);
  }
  fnv1a(hash, extra.data(), extra.size());
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

TokenizedText TokenizedText::open(const std::string& path) {
  const std::string corrupt = ": not a complete autotrain token cache; delete it to tokenize again";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < 32) {
    ::close(fd);
    throw Error(path + corrupt);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (address == MAP_FAILED) throw Error(path + ": cannot map (" + std::strerror(errno) + ")");
  TokenizedText text;
  text.mapping_ = std::shared_ptr<void>(address, [size](void* a) { ::munmap(a, size); });
  const char* bytes = static_cast<const char*>(address);
  uint64_t count = 0;
  std::memcpy(&count, bytes + size - 16, 8);
  if (std::memcmp(bytes, kMagic, 8) != 0 || std::memcmp(bytes + size - 8, kEndMagic, 8) != 0 ||
      count > (size - 24) / 4 || 8 + count * 4 + 16 != size) {
    throw Error(path + corrupt);
  }
  text.ids_ = reinterpret_cast<const int32_t*>(bytes + 8);
  text.size_ = static_cast<int64_t>(count);
  return text;
}

at::Tensor TokenizedText::block(int64_t index, int64_t block_size) const {
  if (index < 0 || (index + 1) * block_size > size_) throw Error("token cache: block index out of range");
  return at::from_blob(const_cast<int32_t*>(ids_ + index * block_size), {block_size}, at::kInt).to(at::kLong);
}

std::string ensure_token_cache(const TokenCacheRequest& request, const TextEncoder& encode) {
  make_directories(request.cache_dir);
  const std::string path = request.cache_dir + "/tokens-" + request.fingerprint + ".bin";
  if (std::filesystem::exists(path)) {
    try {
      TokenizedText::open(path);
      log::info("token cache: reusing " + path);
      return path;
    } catch (const Error& e) {
      log::warn(std::string(e.what()) + "; tokenizing again");
    }
  }
  // Progress in bytes of text files (decompressed, when the file states that size: else none is shown), or in rows
  // of Parquet and Arrow files (whose bytes hold other columns too, compressed in Parquet).
  const bool rows = is_columnar_file(request.data_files.front());
  int64_t total = 0;
  for (const std::string& file : request.data_files) {
    const int64_t size = rows ? rows_in_file(file) : stated_decompressed_size(file);
    if (size == 0) {
      total = 0;
      break;
    }
    total += size;
  }
  ProgressBar progress("tokenize " + std::filesystem::path(request.data_files.front()).filename().string() +
                           (request.data_files.size() > 1 ? " (+" + std::to_string(request.data_files.size() - 1) + ")"
                                                          : ""),
                       total, rows ? "rows" : "B");
  AtomicFileWriter out(path);
  out.write(kMagic, 8);
  uint64_t count = 0;
  int64_t nulls = 0;
  std::vector<int32_t> ids32;
  // Each text's ids and its length in bytes (for the progress), encoded on every core, written in file order.
  using Encoded = std::pair<std::vector<int64_t>, size_t>;
  OrderedBatches<Encoded> batches([&](Encoded& encoded) {
    ids32.assign(encoded.first.begin(), encoded.first.end());
    out.write(ids32.data(), ids32.size() * sizeof(int32_t));
    count += ids32.size();
    progress.advance(rows ? 1 : static_cast<int64_t>(encoded.second) + 1);
    progress.set_status(format_count(static_cast<double>(count)) + " tokens");
  });
  const int64_t texts = for_each_text(request.data_files, request.text_column, [&](const std::string& text) {
    batches.add([&encode, text] { return Encoded{encode(text), text.size()}; }, text.size());
  }, request.chat_template, request.nulls_as_empty ? &nulls : nullptr);
  batches.flush();
  if (nulls > 0)
    log::warn(log::cat(files_label(request.data_files), ": ", nulls, " null text(s) in column \"", request.text_column,
                       "\" read as empty texts (each then its eos alone), as AutoTrain's default trainer reads them"));
  progress.finish();
  if (texts == 0 || count == 0) {
    throw Error(files_label(request.data_files) + ": the dataset has no texts in column \"" + request.text_column +
                "\"; add data or point data_path at the right file");
  }
  out.write(&count, 8);
  out.write(kEndMagic, 8);
  out.commit();
  log::info("token cache: " + std::to_string(texts) + " texts, " + std::to_string(count) + " tokens -> " + path);
  return path;
}

}  // namespace autotrain
