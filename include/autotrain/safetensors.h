// Safetensors files and Hugging Face model folders: read (mmap, zero-copy) and write (atomic).
//
// Format (huggingface/safetensors, docs "Format"): an 8-byte little-endian header length N, N bytes of
// JSON {"__metadata__": {str: str}, "<name>": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}},
// then the data section; offsets are relative to its start. Every field is checked before any byte of
// data is trusted; a bad file is an Error naming the file (and the tensor) and saying what to do.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace autotrain {

struct TensorInfo {
  std::string name;
  std::string dtype;           // as spelled in the file: "F32", "F16", "BF16", "I8", "U8", "I32", "I64", "BOOL", ...
  std::vector<int64_t> shape;  // empty for a 0-d scalar
  uint64_t data_begin = 0;     // byte offsets into the data section, begin <= end
  uint64_t data_end = 0;

  uint64_t byte_size() const { return data_end - data_begin; }
  int64_t numel() const;
};

// The safetensors dtype for a torch dtype ("BF16" for at::kBFloat16); throws Error for one we cannot write.
std::string safetensors_dtype_name(at::ScalarType type);
// The torch dtype for a safetensors dtype (at::kBFloat16 for "BF16"); throws Error for one we cannot read.
at::ScalarType safetensors_scalar_type(const std::string& dtype_name);

// One mapped .safetensors file. Tensors it hands out are CPU views over the mapping (copied only when
// the writer left a tensor misaligned for its element size) and keep the mapping alive. The mapping is
// private copy-on-write: writing into such a tensor changes this process's copy, never the file.
class SafetensorsFile {
 public:
  // Maps and validates the file; throws Error naming the path on any problem.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<std::string>& names() const { return names_; }  // in data-section order
  bool has(const std::string& name) const { return infos_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws Error for an unknown name
  // The tensor's data; throws Error for an unknown name or a dtype outside the supported set.
  at::Tensor tensor(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Hands the tensor's mapped pages back to the kernel (madvise DONTNEED), so resident memory stays low
  // while a whole checkpoint is read once (merge-adapter). Tensors handed out stay valid: a later read maps
  // the unchanged file again; only in-place writes into them are lost.
  void evict(const std::string& name) const;

  struct Mapping;  // the mmap'd bytes (defined in src/safetensors.cpp)

 private:
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  uint64_t data_start_ = 0;  // 8 + header length
  std::vector<std::string> names_;
  std::unordered_map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
};

// A model's weights: `model.safetensors`, or the shards listed by `model.safetensors.index.json`
// ({"weight_map": {tensor: shard file}}). Every shard is opened and validated up front.
class Checkpoint {
 public:
  // `path` is a model folder, a .safetensors file or a .safetensors.index.json file.
  static Checkpoint open(const std::string& path);

  const std::vector<std::string>& names() const { return names_; }  // shard by shard, in data order
  bool has(const std::string& name) const { return file_of_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;
  const std::string& path_of(const std::string& name) const;  // the shard file holding the tensor
  void evict(const std::string& name) const { file_of(name).evict(name); }  // see SafetensorsFile::evict
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  const SafetensorsFile& file_of(const std::string& name) const;

  std::string source_;  // what open() was given, for error messages
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, const SafetensorsFile*> file_of_;
};

// Writes a .safetensors file the Python library reads unchanged, through a temporary name + rename.
// Tensors may live on any device; each is copied to the CPU on its own, so memory stays at one tensor.
// The data section holds them in the given order, stably sorted by element size (largest first) so
// that every tensor stays aligned, as the Python library does. transformers refuses a file whose
// metadata lacks "format", hence the default.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes `tensors` into `folder` as transformers does: one `<prefix>.safetensors` when it fits in
// `max_shard_bytes`, else `<prefix>-00001-of-0000K.safetensors` ... plus `<prefix>.safetensors.index.json`
// ({"metadata": {"total_size": bytes}, "weight_map": {...}}). A tensor larger than the limit gets a shard
// of its own. Returns the files written, index last.
std::vector<std::string> write_sharded_safetensors(
    const std::string& folder, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
    uint64_t max_shard_bytes, const std::string& prefix = "model",
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// A tensor yet to be written: all its header entry needs.
struct PlannedTensor {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;

  uint64_t byte_size() const;
};
// Produces the data of one planned tensor: on any device, in any layout, with the planned dtype and shape.
using TensorProducer = std::function<at::Tensor(const PlannedTensor&)>;
// Told that a tensor's bytes are written and dropped (e.g. to evict the pages it was read from).
using TensorWritten = std::function<void(const PlannedTensor&)>;

// The two writers above for checkpoints larger than memory: the header (and the shards) come from the plan
// alone, then `produce` is called once per tensor in data order, and each tensor is written and dropped
// before the next, so memory holds one tensor at a time. The files are those the tensors would give.
void write_safetensors_streamed(const std::string& path, const std::vector<PlannedTensor>& plan,
                                const TensorProducer& produce,
                                const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                                const TensorWritten& on_written = {});
std::vector<std::string> write_sharded_safetensors_streamed(
    const std::string& folder, const std::vector<PlannedTensor>& plan, uint64_t max_shard_bytes,
    const TensorProducer& produce, const std::string& prefix = "model",
    const std::map<std::string, std::string>& metadata = {{"format", "pt"}}, const TensorWritten& on_written = {});

}  // namespace autotrain
