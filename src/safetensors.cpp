#include "autotrain/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/text_util.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors is little-endian; so is every host we map it on");

namespace autotrain {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The Python library refuses larger headers too (safetensors MAX_HEADER_SIZE = 100,000,000).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
const char* const kCorrupt = "; the file is corrupt or truncated: re-download or re-create it";
const char* const kSupportedDtypes = "F32, F16, BF16, I8, U8, I32, I64, BOOL";

struct DtypeSpec {
  const char* name;
  uint64_t bytes;
  bool supported;       // handed out as a tensor
  at::ScalarType type;  // meaningful when supported
};

// Dtypes of the format (safetensors src/tensor.rs). The unsupported ones are sized so that a file
// holding one still validates; asking for such a tensor is the error.
const DtypeSpec kDtypes[] = {
    {"F32", 4, true, at::kFloat},      {"F16", 2, true, at::kHalf},    {"BF16", 2, true, at::kBFloat16},
    {"I8", 1, true, at::kChar},        {"U8", 1, true, at::kByte},     {"I32", 4, true, at::kInt},
    {"I64", 8, true, at::kLong},       {"BOOL", 1, true, at::kBool},   {"F64", 8, false, at::kDouble},
    {"I16", 2, false, at::kShort},     {"U16", 2, false, at::kByte},   {"U32", 4, false, at::kByte},
    {"U64", 8, false, at::kByte},      {"F8_E4M3", 1, false, at::kByte}, {"F8_E5M2", 1, false, at::kByte},
    {"F8_E8M0", 1, false, at::kByte},
};

const DtypeSpec* find_dtype(const std::string& name) {
  for (const DtypeSpec& spec : kDtypes)
    if (name == spec.name) return &spec;
  return nullptr;
}

std::string in_quotes(const std::string& name) { return "\"" + name + "\""; }

// nlohmann quotes the offending bytes of a bad header raw; keep the one-line message printable.
std::string printable(std::string text) {
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return text;
}

// nlohmann keeps the last of two equal keys without a word; a file with two "model.norm.weight" entries
// is ambiguous, so we refuse it. `what` names the JSON for the message ("header", "index").
json parse_json_rejecting_duplicates(std::string_view text, const std::string& path, const std::string& what) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key.empty() ? "\"\"" : key;
    }
    return true;
  };
  json parsed;
  try {
    parsed = json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw Error(path + ": the " + what + " is not valid JSON (" + printable(e.what()) + ")" + kCorrupt);
  }
  if (!duplicate.empty())
    throw Error(path + ": the " + what + " names " + in_quotes(duplicate) + " twice, so it is ambiguous" + kCorrupt);
  return parsed;
}

bool read_offset(const json& value, uint64_t& out) {
  if (!value.is_number_unsigned()) return false;
  out = value.get<uint64_t>();
  return true;
}

TensorInfo parse_entry(const std::string& name, const json& entry, uint64_t data_size, const std::string& path) {
  auto bad = [&](const std::string& what) { return Error(path + ": tensor " + in_quotes(name) + ": " + what + kCorrupt); };
  if (!entry.is_object()) throw bad("its header entry is not an object");
  TensorInfo info;
  info.name = name;

  auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) throw bad("\"dtype\" is missing or not a string");
  info.dtype = dtype->get<std::string>();
  const DtypeSpec* spec = find_dtype(info.dtype);
  if (!spec)
    throw Error(path + ": unsupported dtype " + info.dtype + " for tensor " + in_quotes(name) + " (supported: " +
                kSupportedDtypes + "); convert the checkpoint to one of these");

  auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) throw bad("\"shape\" is missing or not an array");
  uint64_t numel = 1;
  for (const json& dim : *shape) {
    uint64_t size = 0;
    if (!read_offset(dim, size) || size > uint64_t(std::numeric_limits<int64_t>::max()))
      throw bad("\"shape\" holds " + dim.dump() + ", not a size");
    info.shape.push_back(int64_t(size));
    if (__builtin_mul_overflow(numel, size, &numel)) throw bad("shape " + shape->dump() + " overflows 64 bits");
  }
  uint64_t expected_bytes = 0;
  if (numel > uint64_t(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, spec->bytes, &expected_bytes))
    throw bad("shape " + shape->dump() + " overflows 64 bits");

  auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
      !read_offset((*offsets)[0], info.data_begin) || !read_offset((*offsets)[1], info.data_end))
    throw bad("\"data_offsets\" is missing or not two byte offsets");
  const std::string span = offsets->dump();
  if (info.data_end < info.data_begin) throw bad("data_offsets " + span + " end before they begin");
  if (info.data_end > data_size)
    throw bad("data_offsets " + span + " run past the data section (" + std::to_string(data_size) + " bytes)");
  if (info.byte_size() != expected_bytes)
    throw bad("shape " + shape_text(info.shape) + " of " + info.dtype + " needs " + std::to_string(expected_bytes) +
              " bytes but data_offsets " + span + " hold " + std::to_string(info.byte_size()));
  return info;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& path) {
  if (!value.is_object()) throw Error(path + ": \"__metadata__\" is not an object of strings" + kCorrupt);
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string())
      throw Error(path + ": \"__metadata__\" entry " + in_quotes(key) + " is " + item.dump() + ", not a string" + kCorrupt);
    metadata[key] = item.get<std::string>();
  }
  return metadata;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated at open: no overflow
  return n;
}

std::string safetensors_dtype_name(at::ScalarType type) {
  for (const DtypeSpec& spec : kDtypes)
    if (spec.supported && spec.type == type) return spec.name;
  throw Error(std::string("cannot write a tensor of dtype ") + c10::toString(type) + " to safetensors (supported: " +
              kSupportedDtypes + "); convert it first");
}

at::ScalarType safetensors_scalar_type(const std::string& dtype_name) {
  const DtypeSpec* spec = find_dtype(dtype_name);
  if (!spec || !spec->supported)
    throw Error("unsupported dtype " + dtype_name + " (supported: " + kSupportedDtypes +
                "); convert the checkpoint to one of these");
  return spec->type;
}

// ---- SafetensorsFile ---------------------------------------------------------------------------

struct SafetensorsFile::Mapping {
  uint8_t* bytes = nullptr;
  uint64_t size = 0;
  Mapping(void* address, uint64_t length) : bytes(static_cast<uint8_t*>(address)), size(length) {}
  ~Mapping() { ::munmap(bytes, size); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + "); check the path");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file; expected a .safetensors file");
  }
  const uint64_t file_size = uint64_t(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw Error(path + ": only " + std::to_string(file_size) +
                " bytes, too short for the 8-byte header length of a safetensors file" + kCorrupt);
  }
  // Private and writable: an in-place op on a weight copies that page instead of crashing, and never
  // reaches the file. Pages are read on first touch, so opening a 16 GB checkpoint costs nothing.
  void* address = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  ::close(fd);
  if (address == MAP_FAILED) throw Error(path + ": cannot map (" + std::strerror(map_errno) + ")");

  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = std::make_shared<Mapping>(address, file_size);

  uint64_t header_size = 0;
  std::memcpy(&header_size, file->mapping_->bytes, 8);
  if (header_size > kMaxHeaderBytes)
    throw Error(path + ": header length " + std::to_string(header_size) + " is absurd (the format allows 100 MB)" +
                kCorrupt);
  if (header_size > file_size - 8)
    throw Error(path + ": header length " + std::to_string(header_size) + " runs past the end of the file (" +
                std::to_string(file_size) + " bytes)" + kCorrupt);
  file->data_start_ = 8 + header_size;
  const uint64_t data_size = file_size - file->data_start_;

  const char* text = reinterpret_cast<const char*>(file->mapping_->bytes + 8);
  json header = parse_json_rejecting_duplicates(std::string_view(text, header_size), path, "header");
  if (!header.is_object()) throw Error(path + ": the header is a JSON " + std::string(header.type_name()) + ", not an object" + kCorrupt);

  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      file->metadata_ = parse_metadata(entry, path);
      continue;
    }
    auto inserted = file->infos_.emplace(name, parse_entry(name, entry, data_size, path));
    by_offset.push_back(&inserted.first->second);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return std::tie(a->data_begin, a->data_end, a->name) < std::tie(b->data_begin, b->data_end, b->name);
  });
  for (size_t i = 0; i < by_offset.size(); ++i) {
    // Sorted by begin and disjoint so far, so the previous tensor is the only one that can overlap.
    if (i > 0 && by_offset[i]->data_begin < by_offset[i - 1]->data_end)
      throw Error(path + ": tensors " + in_quotes(by_offset[i - 1]->name) + " and " + in_quotes(by_offset[i]->name) +
                  " overlap (bytes " + std::to_string(by_offset[i - 1]->data_begin) + "-" +
                  std::to_string(by_offset[i - 1]->data_end) + " and " + std::to_string(by_offset[i]->data_begin) +
                  "-" + std::to_string(by_offset[i]->data_end) + ")" + kCorrupt);
    file->names_.push_back(by_offset[i]->name);
  }
  return file;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end()) throw Error(path_ + ": no tensor " + in_quotes(name) + " in this file");
  return it->second;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const TensorInfo& info = this->info(name);
  const DtypeSpec* spec = find_dtype(info.dtype);  // validated at open
  if (!spec->supported)
    throw Error(path_ + ": unsupported dtype " + info.dtype + " for tensor " + in_quotes(name) + " (supported: " +
                kSupportedDtypes + "); convert the checkpoint to one of these");
  uint8_t* data = mapping_->bytes + data_start_ + info.data_begin;
  const auto options = at::TensorOptions().dtype(spec->type).device(at::kCPU);
  if (reinterpret_cast<uintptr_t>(data) % spec->bytes != 0) {
    // Writers other than the Python library may leave a tensor misaligned; kernels expect alignment.
    at::Tensor copy = at::empty(info.shape, options);
    if (info.byte_size() > 0) std::memcpy(copy.data_ptr(), data, info.byte_size());
    return copy;
  }
  std::shared_ptr<Mapping> keep_alive = mapping_;
  return at::from_blob(data, info.shape, [keep_alive](void*) {}, options);
}

void SafetensorsFile::evict(const std::string& name) const {
  const TensorInfo& info = this->info(name);
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  // Only whole pages inside the tensor: a page shared with a neighbour may still be in use.
  const uint64_t begin = (data_start_ + info.data_begin + page - 1) / page * page;
  const uint64_t end = (data_start_ + info.data_end) / page * page;
  if (end > begin) ::madvise(mapping_->bytes + begin, end - begin, MADV_DONTNEED);
}

// ---- Checkpoint ----------------------------------------------------------------------------------

namespace {

const char* const kSingleName = "model.safetensors";
const char* const kIndexName = "model.safetensors.index.json";

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint checkpoint;
  checkpoint.source_ = path;
  std::error_code ec;
  std::string index_path;
  std::string single_path = path;
  if (fs::is_directory(path, ec)) {
    // transformers looks for the single file first, then the index.
    single_path = (fs::path(path) / kSingleName).string();
    if (!fs::exists(single_path, ec)) {
      single_path.clear();
      index_path = (fs::path(path) / kIndexName).string();
      if (!fs::exists(index_path, ec))
        throw Error(path + ": no " + kSingleName + " or " + kIndexName +
                    " in this folder; point to a Hugging Face model folder with safetensors weights");
    }
  } else if (ends_with(path, ".index.json")) {
    index_path = path;
    single_path.clear();
  }

  if (!single_path.empty()) {
    checkpoint.files_.push_back(SafetensorsFile::open(single_path));
    for (const std::string& name : checkpoint.files_[0]->names()) {
      checkpoint.names_.push_back(name);
      checkpoint.file_of_[name] = checkpoint.files_[0].get();
    }
    return checkpoint;
  }

  json index = parse_json_rejecting_duplicates(read_file(index_path), index_path, "index");
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw Error(index_path + ": no \"weight_map\" object; the index is corrupt, re-download it");
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;  // file name -> opened shard, in name order
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string())
      throw Error(index_path + ": weight_map entry " + in_quotes(name) + " is " + shard.dump() +
                  ", not a shard file name; the index is corrupt, re-download it");
    const std::string shard_name = shard.get<std::string>();
    if (shards.count(shard_name)) continue;
    const fs::path shard_path = fs::path(index_path).parent_path() / shard_name;
    if (!fs::is_regular_file(shard_path, ec))
      throw Error(index_path + ": shard " + in_quotes(shard_name) + " (holding tensor " + in_quotes(name) +
                  ") is missing; download it into the model folder");
    shards[shard_name] = SafetensorsFile::open(shard_path.string());
  }
  for (const auto& [name, shard] : index["weight_map"].items()) {
    const SafetensorsFile* file = shards.at(shard.get<std::string>()).get();
    if (!file->has(name))
      throw Error(index_path + ": tensor " + in_quotes(name) + " is listed in shard " + in_quotes(shard.get<std::string>()) +
                  " but " + file->path() + " does not hold it; the shard and the index disagree, re-download them");
    checkpoint.file_of_[name] = file;
  }
  // Tensors a shard holds but the index does not list are ignored, as transformers ignores them.
  for (const auto& [shard_name, file] : shards) {
    checkpoint.files_.push_back(file);
    for (const std::string& name : file->names()) {
      auto it = checkpoint.file_of_.find(name);
      if (it != checkpoint.file_of_.end() && it->second == file.get()) checkpoint.names_.push_back(name);
    }
  }
  return checkpoint;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end())
    throw Error(source_ + ": no tensor " + in_quotes(name) + " in this checkpoint; is it the right model for this architecture?");
  return *it->second;
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return file_of(name).info(name); }
at::Tensor Checkpoint::tensor(const std::string& name) const { return file_of(name).tensor(name); }
const std::string& Checkpoint::path_of(const std::string& name) const { return file_of(name).path(); }

// ---- writing -------------------------------------------------------------------------------------

uint64_t PlannedTensor::byte_size() const {
  uint64_t numel = 1;
  for (int64_t d : shape) numel *= uint64_t(d);
  return numel * c10::elementSize(dtype);
}

namespace {

void check_unique_names(const std::vector<PlannedTensor>& plan, const std::string& path) {
  std::set<std::string> seen;
  for (const PlannedTensor& planned : plan) {
    if (planned.name == "__metadata__") throw Error(path + ": a tensor cannot be named \"__metadata__\"; rename it");
    if (!seen.insert(planned.name).second)
      throw Error(path + ": tensor " + in_quotes(planned.name) + " given twice; names must be unique");
  }
}

// What the streamed writers need to know of in-memory tensors, and a producer that hands them out.
std::vector<PlannedTensor> plan_of(const std::vector<std::pair<std::string, at::Tensor>>& tensors, const std::string& path) {
  std::vector<PlannedTensor> plan;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw Error(path + ": tensor " + in_quotes(name) + " is undefined");
    plan.push_back({name, tensor.scalar_type(), tensor.sizes().vec()});
  }
  return plan;
}

TensorProducer producer_of(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  auto by_name = std::make_shared<std::unordered_map<std::string, const at::Tensor*>>();
  for (const auto& [name, tensor] : tensors) by_name->emplace(name, &tensor);
  return [by_name](const PlannedTensor& planned) { return *by_name->at(planned.name); };
}

// The header: metadata, then each tensor's dtype, shape and offsets in data order, padded with spaces to a
// multiple of 8 bytes as the Python library pads.
std::string header_text(const std::vector<const PlannedTensor*>& order, const std::map<std::string, std::string>& metadata,
                        const std::string& path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const PlannedTensor* planned : order) {
    std::string dtype;
    try {
      dtype = safetensors_dtype_name(planned->dtype);
    } catch (const Error& e) {
      throw Error(path + ": tensor " + in_quotes(planned->name) + ": " + e.what());
    }
    const uint64_t bytes = planned->byte_size();
    header[planned->name] = {{"dtype", dtype}, {"shape", planned->shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    throw Error(path + ": a tensor name or metadata entry is not valid UTF-8 (" + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

// Produces one planned tensor and writes its bytes; the tensor (and its CPU copy) is gone on return.
void write_tensor_data(AtomicFileWriter& out, const PlannedTensor& planned, const TensorProducer& produce,
                       const std::string& path) {
  at::Tensor cpu = produce(planned).detach().to(at::kCPU).contiguous();
  if (cpu.scalar_type() != planned.dtype || !cpu.sizes().equals(planned.shape))
    throw Error(path + ": tensor " + in_quotes(planned.name) + " was planned as " + c10::toString(planned.dtype) + " " +
                shape_text(planned.shape) + " but produced as " + c10::toString(cpu.scalar_type()) + " " +
                shape_text(cpu.sizes()) + " (a bug)");
  if (cpu.numel() > 0) out.write(cpu.data_ptr(), planned.byte_size());
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_safetensors_streamed(path, plan_of(tensors, path), producer_of(tensors), metadata);
}

std::vector<std::string> write_sharded_safetensors(const std::string& folder,
                                                   const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                   uint64_t max_shard_bytes, const std::string& prefix,
                                                   const std::map<std::string, std::string>& metadata) {
  return write_sharded_safetensors_streamed(folder, plan_of(tensors, folder), max_shard_bytes, producer_of(tensors),
                                            prefix, metadata);
}

void write_safetensors_streamed(const std::string& path, const std::vector<PlannedTensor>& plan,
                                const TensorProducer& produce, const std::map<std::string, std::string>& metadata,
                                const TensorWritten& on_written) {
  check_unique_names(plan, path);
  std::vector<const PlannedTensor*> order;
  for (const PlannedTensor& planned : plan) order.push_back(&planned);
  // Largest elements first: every offset then stays a multiple of the element size (the header is
  // padded to 8), and the Python library rejects gaps between tensors, so padding is no alternative.
  std::stable_sort(order.begin(), order.end(), [](const PlannedTensor* a, const PlannedTensor* b) {
    return c10::elementSize(a->dtype) > c10::elementSize(b->dtype);
  });
  const std::string text = header_text(order, metadata, path);

  AtomicFileWriter out(path);
  const uint64_t header_size = text.size();
  out.write(&header_size, sizeof header_size);
  out.write(text);
  for (const PlannedTensor* planned : order) {
    write_tensor_data(out, *planned, produce, path);
    if (on_written) on_written(*planned);
  }
  out.commit();
}

std::vector<std::string> write_sharded_safetensors_streamed(
    const std::string& folder, const std::vector<PlannedTensor>& plan, uint64_t max_shard_bytes,
    const TensorProducer& produce, const std::string& prefix, const std::map<std::string, std::string>& metadata,
    const TensorWritten& on_written) {
  check_unique_names(plan, folder);
  make_directories(folder);
  // Greedy in the given order, as transformers' split_torch_state_dict_into_shards does.
  std::vector<std::vector<PlannedTensor>> shards;
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const PlannedTensor& planned : plan) {
    const uint64_t bytes = planned.byte_size();
    if (shards.empty() || (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes)) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(planned);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  if (shards.empty()) shards.emplace_back();

  const fs::path dir(folder);
  const std::string single = (dir / (prefix + ".safetensors")).string();
  const std::string index_path = (dir / (prefix + ".safetensors.index.json")).string();
  const std::regex shard_pattern(std::regex_replace(prefix, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                                 R"(-\d{5}-of-\d{5}\.safetensors)");
  std::vector<std::string> written;
  if (shards.size() == 1) {
    write_safetensors_streamed(single, shards[0], produce, metadata, on_written);
    written.push_back(single);
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      const std::string shard_name = prefix + name;
      write_safetensors_streamed((dir / shard_name).string(), shards[i], produce, metadata, on_written);
      written.push_back((dir / shard_name).string());
      for (const PlannedTensor& planned : shards[i]) weight_map[planned.name] = shard_name;
    }
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    write_file_atomic(index_path, index.dump(2) + "\n");
    written.push_back(index_path);
  }
  // Leftovers of an earlier save (a single file now sharded, or another shard count) would be read
  // instead of, or mixed with, the new weights: remove them, as transformers' save_pretrained does.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string path = entry.path().string();
    const std::string file_name = entry.path().filename().string();
    const bool ours = std::find(written.begin(), written.end(), path) != written.end();
    const bool stale = path == single || path == index_path || std::regex_match(file_name, shard_pattern);
    if (stale && !ours) fs::remove(entry.path(), ec);
  }
  return written;
}

}  // namespace autotrain
