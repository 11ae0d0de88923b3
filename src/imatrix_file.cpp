// Reading importance-matrix files (llama.cpp's two formats), apart from the collector in imatrix.cpp so that the
// fuzz target links the reader alone.
#include "autotrain/imatrix.h"

#include <cmath>
#include <cstring>

#include "autotrain/error.h"
#include "autotrain/fileio.h"

namespace autotrain {

namespace {

// Little-endian reads from a file's bytes, each checked against its end; failures name the file and what was read.
class Reader {
 public:
  Reader(const std::string& path, const std::string& bytes) : path_(path), bytes_(bytes) {}

  template <typename T>
  T value(const char* what) {
    T out;
    std::memcpy(&out, take(sizeof(T), what), sizeof(T));
    return out;
  }
  std::string text(uint64_t length, const char* what) { return std::string(take(length, what), length); }
  const char* take(uint64_t n, const char* what) {
    if (n > bytes_.size() - pos_) throw broken(std::string("truncated in ") + what);
    const char* at = bytes_.data() + pos_;
    pos_ += n;
    return at;
  }
  void seek(uint64_t pos, const char* what) {
    if (pos > bytes_.size()) throw broken(std::string("truncated before ") + what);
    pos_ = pos;
  }
  uint64_t pos() const { return pos_; }
  bool at_end() const { return pos_ == bytes_.size(); }
  Error broken(const std::string& why) const {
    return Error(path_ + ": not an importance matrix llama.cpp reads (" + why + ", at byte " + std::to_string(pos_) +
                 "); write it again with llama-imatrix or autotrain imatrix");
  }

 private:
  const std::string& path_;
  const std::string& bytes_;
  uint64_t pos_ = 0;
};

// GGUF value types (ggml's gguf.h).
enum GgufValue : uint32_t {
  kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64
};

uint64_t scalar_size(uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

struct TensorInfo {
  std::vector<uint64_t> dims;  // innermost first
  uint32_t type = 0;
  uint64_t offset = 0;
};

void read_gguf(Reader& in, ImportanceMatrix& out) {
  in.take(4, "the magic");
  const uint32_t version = in.value<uint32_t>("the version");
  if (version != 2 && version != 3) throw in.broken("GGUF version " + std::to_string(version));
  const uint64_t n_tensors = in.value<uint64_t>("the tensor count");
  const uint64_t n_kv = in.value<uint64_t>("the metadata count");
  auto string = [&](const char* what) { return in.text(in.value<uint64_t>(what), what); };
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = string("a metadata key");
    const uint32_t type = in.value<uint32_t>("a metadata type");
    if (key == "imatrix.datasets" && type == kArray) {
      const uint32_t element = in.value<uint32_t>("imatrix.datasets");
      const uint64_t n = in.value<uint64_t>("imatrix.datasets");
      if (element != kString) throw in.broken("imatrix.datasets is not an array of strings");
      for (uint64_t j = 0; j < n; ++j) out.datasets.push_back(string("imatrix.datasets"));
    } else if (key == "imatrix.chunk_count" && type == kU32) {
      out.chunk_count = in.value<uint32_t>("imatrix.chunk_count");
    } else if (key == "general.alignment" && type == kU32) {
      alignment = in.value<uint32_t>("general.alignment");
      if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw in.broken("general.alignment is not a power of 2");
    } else if (type == kString) {
      string("a metadata value");
    } else if (type == kArray) {
      const uint32_t element = in.value<uint32_t>("an array's type");
      const uint64_t n = in.value<uint64_t>("an array's length");
      if (element == kString) {
        for (uint64_t j = 0; j < n; ++j) string("an array's string");
      } else if (scalar_size(element) == 0 || n > (uint64_t(1) << 40)) {
        throw in.broken("metadata " + key + " has an array of type " + std::to_string(element));
      } else {
        in.take(n * scalar_size(element), "an array");
      }
    } else if (scalar_size(type) != 0) {
      in.take(scalar_size(type), "a metadata value");
    } else {
      throw in.broken("metadata " + key + " has type " + std::to_string(type));
    }
  }
  std::map<std::string, TensorInfo> tensors;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = string("a tensor name");
    TensorInfo info;
    const uint32_t n_dims = in.value<uint32_t>("a tensor's dimensions");
    if (n_dims == 0 || n_dims > 4) throw in.broken("tensor " + name + " has " + std::to_string(n_dims) + " dimensions");
    for (uint32_t d = 0; d < n_dims; ++d) info.dims.push_back(in.value<uint64_t>("a tensor's shape"));
    info.type = in.value<uint32_t>("a tensor's type");
    info.offset = in.value<uint64_t>("a tensor's offset");
    tensors[name] = info;
  }
  const uint64_t data_start = (in.pos() + alignment - 1) / alignment * alignment;
  auto floats = [&](const std::string& name) {
    const TensorInfo& info = tensors.at(name);
    if (info.type != 0) throw in.broken(name + " is not F32");
    uint64_t n = 1;
    for (uint64_t d : info.dims) {
      if (d == 0 || d > (uint64_t(1) << 32)) throw in.broken(name + " has a dimension of " + std::to_string(d));
      n *= d;
      if (n > (uint64_t(1) << 40)) throw in.broken(name + " is larger than any model's");
    }
    if (info.offset > (uint64_t(1) << 62)) throw in.broken(name + "'s offset");
    in.seek(data_start + info.offset, name.c_str());
    const char* data = in.take(n * 4, name.c_str());  // inside the file: then the copy below is of its size at most
    std::vector<float> values(n);
    std::memcpy(values.data(), data, n * 4);
    return values;
  };
  const std::string sums_suffix = ".in_sum2", counts_suffix = ".counts";
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const auto& [name, info] : tensors) {
    std::string weight;
    if (ends_with(name, sums_suffix)) {
      weight = name.substr(0, name.size() - sums_suffix.size());
    } else if (ends_with(name, counts_suffix)) {
      weight = name.substr(0, name.size() - counts_suffix.size());
      if (!tensors.count(weight + sums_suffix)) throw in.broken(weight + " has counts but no " + sums_suffix);
      continue;
    } else {
      continue;  // in_sum and anything else: not needed
    }
    if (!tensors.count(weight + counts_suffix)) throw in.broken(weight + " has sums but no " + counts_suffix);
    const std::vector<float> sums = floats(name), counts = floats(weight + counts_suffix);
    if (sums.size() % counts.size() != 0)
      throw in.broken(weight + ": " + std::to_string(sums.size()) + " sums for " + std::to_string(counts.size()) +
                      " counts");
    // llama-quantize's load_imatrix: each matrix's sums over its count (counts rounded to integers), 1 if 0.
    const size_t per_matrix = sums.size() / counts.size();
    std::vector<float>& values = out.values[weight];
    values.resize(sums.size());
    for (size_t j = 0; j < counts.size(); ++j) {
      const float count = float(std::lround(counts[j]));
      for (size_t i = 0; i < per_matrix; ++i)
        values[j * per_matrix + i] = count > 0.0f ? sums[j * per_matrix + i] / count : 1.0f;
    }
  }
  if (out.values.empty()) throw in.broken("no <weight>.in_sum2 / .counts tensors");
}

void read_legacy(Reader& in, ImportanceMatrix& out) {
  const int32_t n_entries = in.value<int32_t>("the entry count");
  if (n_entries < 1) throw in.broken("an entry count of " + std::to_string(n_entries));
  for (int32_t i = 0; i < n_entries; ++i) {
    const int32_t length = in.value<int32_t>("an entry's name length");
    if (length < 1) throw in.broken("a name length of " + std::to_string(length));
    const std::string name = in.text(uint64_t(length), "an entry's name");
    const int32_t ncall = in.value<int32_t>("an entry's call count");
    const int32_t n = in.value<int32_t>("an entry's value count");
    if (n < 1) throw in.broken(name + " has " + std::to_string(n) + " values");
    const char* data = in.take(uint64_t(n) * 4, name.c_str());
    std::vector<float>& values = out.values[name];
    values.resize(size_t(n));
    std::memcpy(values.data(), data, size_t(n) * 4);
    if (ncall > 0) {
      for (float& v : values) v /= float(ncall);
    }
  }
  if (in.at_end()) return;  // the chunk count and dataset name are optional
  out.chunk_count = in.value<int32_t>("the chunk count");
  if (in.at_end()) return;
  const int32_t length = in.value<int32_t>("the dataset name's length");
  if (length > 0) out.datasets.push_back(in.text(uint64_t(length), "the dataset name"));
}

}  // namespace

ImportanceMatrix load_imatrix(const std::string& path) {
  const std::string bytes = read_file(path);
  ImportanceMatrix out;
  out.path = path;
  Reader in(path, bytes);
  if (bytes.compare(0, 4, "GGUF") == 0) {
    read_gguf(in, out);
  } else {
    read_legacy(in, out);
  }
  for (const auto& [name, values] : out.values) {
    for (float v : values) {
      if (!std::isfinite(v))
        throw Error(path + ": the importance of " + name + " holds a value that is not finite (" + std::to_string(v) +
                    "); llama-quantize refuses it too: compute the matrix again");
    }
  }
  return out;
}

}  // namespace autotrain
