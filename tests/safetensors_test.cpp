// The safetensors reader and writer against files the Python `safetensors` library wrote
// (tests/reference/safetensors_files.py) and against hand-broken files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/safetensors.h"

namespace autotrain {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

const std::string kReference = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/safetensors";

json expected_values() {
  const std::string path = kReference + "/expected.json";
  if (!fs::exists(path))
    throw std::runtime_error(path + " is missing: run tools/make_fixtures.py or tests/reference/safetensors_files.py "
                                    "--fixtures " AUTOTRAIN_FIXTURES_DIR);
  return json::parse(read_file(path));
}

std::string hex_of(const at::Tensor& tensor) {
  at::Tensor t = tensor.contiguous();
  const auto* bytes = static_cast<const uint8_t*>(t.data_ptr());
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (int64_t i = 0; i < t.numel() * int64_t(t.element_size()); ++i) {
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 15];
  }
  return out;
}

// Every tensor of `expected` ({name: {dtype, shape, hex}}) is in `read`, bit for bit, and nothing else.
void expect_same_tensors(const json& expected, const std::vector<std::string>& names,
                         const std::function<at::Tensor(const std::string&)>& read,
                         const std::function<TensorInfo(const std::string&)>& info) {
  EXPECT_EQ(names.size(), expected.size());
  for (const auto& [name, want] : expected.items()) {
    SCOPED_TRACE(name);
    at::Tensor got = read(name);
    EXPECT_EQ(info(name).dtype, want["dtype"].get<std::string>());
    EXPECT_EQ(got.sizes().vec(), want["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(safetensors_dtype_name(got.scalar_type()), want["dtype"].get<std::string>());
    EXPECT_EQ(hex_of(got), want["hex"].get<std::string>());
  }
}

void expect_same_file(const SafetensorsFile& file, const json& expected) {
  expect_same_tensors(
      expected["tensors"], file.names(), [&](const std::string& n) { return file.tensor(n); },
      [&](const std::string& n) { return file.info(n); });
  using Metadata = std::map<std::string, std::string>;
  EXPECT_EQ(file.metadata(), expected["metadata"].get<Metadata>());
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("autotrain_safetensors_" + std::to_string(::getpid()) + "_" + test->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string temp(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

// ---- reading the oracle's files -------------------------------------------------------------------

TEST_F(SafetensorsTest, ReadsEveryDtypeBitExact) {
  const json expected = expected_values();
  auto file = SafetensorsFile::open(kReference + "/all_dtypes.safetensors");
  expect_same_file(*file, expected["all_dtypes.safetensors"]);
  EXPECT_EQ(file->info("f32.scalar").shape.size(), 0u);
  EXPECT_EQ(file->tensor("f32.scalar").dim(), 0);
  EXPECT_EQ(file->tensor("empty.bf16").numel(), 0);
  EXPECT_EQ(file->info("model.layers.0.self_attn.q_proj.weight").byte_size(), 11u * 17u * 2u);
}

TEST_F(SafetensorsTest, NamesFollowTheDataSection) {
  auto file = SafetensorsFile::open(kReference + "/all_dtypes.safetensors");
  for (size_t i = 1; i < file->names().size(); ++i)
    EXPECT_LE(file->info(file->names()[i - 1]).data_end, file->info(file->names()[i]).data_begin);
}

TEST_F(SafetensorsTest, TensorsAreViewsThatOutliveTheFile) {
  const json expected = expected_values()["all_dtypes.safetensors"]["tensors"];
  auto file = SafetensorsFile::open(kReference + "/all_dtypes.safetensors");
  at::Tensor weight = file->tensor("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(weight.data_ptr(), file->tensor("model.layers.0.self_attn.q_proj.weight").data_ptr());  // no copy
  file.reset();  // the tensor keeps the mapping alive
  EXPECT_EQ(hex_of(weight), expected["model.layers.0.self_attn.q_proj.weight"]["hex"].get<std::string>());
}

TEST_F(SafetensorsTest, WritingIntoAMappedTensorLeavesTheFileAlone) {
  const std::string path = temp("w.safetensors");
  write_safetensors(path, {{"w", at::arange(6, at::kFloat)}});
  const std::string before = read_file(path);
  {
    at::Tensor w = SafetensorsFile::open(path)->tensor("w");
    w.mul_(2);  // copy-on-write page: no crash
    EXPECT_EQ(w[5].item<float>(), 10.0f);
  }
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(SafetensorsFile::open(path)->tensor("w")[5].item<float>(), 5.0f);
}

TEST_F(SafetensorsTest, CheckpointReadsASingleFileFolder) {
  const json expected = expected_values();
  Checkpoint checkpoint = Checkpoint::open(kReference + "/single");
  expect_same_tensors(
      expected["single/model.safetensors"]["tensors"], checkpoint.names(),
      [&](const std::string& n) { return checkpoint.tensor(n); }, [&](const std::string& n) { return checkpoint.info(n); });
  EXPECT_TRUE(checkpoint.has("lm_head.weight"));
  EXPECT_FALSE(checkpoint.has("model.layers.1.mlp.up_proj.weight"));
  EXPECT_EQ(checkpoint.path_of("lm_head.weight"), kReference + "/single/model.safetensors");
}

TEST_F(SafetensorsTest, CheckpointReadsAShardedFolderThroughItsIndex) {
  const json expected = expected_values()["sharded"];
  for (const std::string& source : {kReference + "/sharded", kReference + "/sharded/model.safetensors.index.json"}) {
    SCOPED_TRACE(source);
    Checkpoint checkpoint = Checkpoint::open(source);
    expect_same_tensors(
        expected["tensors"], checkpoint.names(), [&](const std::string& n) { return checkpoint.tensor(n); },
        [&](const std::string& n) { return checkpoint.info(n); });
    EXPECT_EQ(checkpoint.files().size(), 2u);
    for (const auto& [name, shard] : expected["shard_of"].items())
      EXPECT_EQ(fs::path(checkpoint.path_of(name)).filename().string(), shard.get<std::string>()) << name;
    try {
      checkpoint.tensor("model.layers.7.mlp.up_proj.weight");
      ADD_FAILURE() << "no error for an absent tensor";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.layers.7.mlp.up_proj.weight"), std::string::npos) << e.what();
    }
  }
}

TEST_F(SafetensorsTest, CopiesAMisalignedTensorInsteadOfViewingIt) {
  // The Python library keeps tensors aligned; other writers may not. Here an F32 starts at data byte 3.
  std::string header = R"({"pad":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                       R"("x":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data section starts aligned; "x" does not
  std::string bytes(8, '\0');
  const uint64_t size = header.size();
  std::memcpy(bytes.data(), &size, 8);
  const float values[2] = {1.5f, -2.25f};
  bytes += header + std::string("\x01\x02\x03", 3) + std::string(reinterpret_cast<const char*>(values), 8);
  write_file_atomic(temp("misaligned.safetensors"), bytes);
  at::Tensor x = SafetensorsFile::open(temp("misaligned.safetensors"))->tensor("x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data_ptr()) % 4, 0u);
  EXPECT_EQ(x[0].item<float>(), 1.5f);
  EXPECT_EQ(x[1].item<float>(), -2.25f);
}

// ---- writing --------------------------------------------------------------------------------------

NamedTensors all_tensors_of(const SafetensorsFile& file) {
  NamedTensors tensors;
  for (const std::string& name : file.names()) tensors.emplace_back(name, file.tensor(name));
  return tensors;
}

TEST_F(SafetensorsTest, WriterRoundTripsEveryDtype) {
  const json expected = expected_values()["all_dtypes.safetensors"];
  auto original = SafetensorsFile::open(kReference + "/all_dtypes.safetensors");
  write_safetensors(temp("copy.safetensors"), all_tensors_of(*original), original->metadata());
  auto copy = SafetensorsFile::open(temp("copy.safetensors"));
  expect_same_file(*copy, expected);
  const std::string bytes = read_file(temp("copy.safetensors"));
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  EXPECT_EQ(header_size % 8, 0u);  // padded with spaces like the Python library
  EXPECT_FALSE(fs::exists(temp("copy.safetensors.tmp." + std::to_string(::getpid()))));
}

TEST_F(SafetensorsTest, WriterTakesNonContiguousTensors) {
  at::Tensor base = at::arange(12, at::kFloat).reshape({3, 4});
  write_safetensors(temp("t.safetensors"), {{"t", base.t()}, {"row", base[1]}});
  auto file = SafetensorsFile::open(temp("t.safetensors"));
  EXPECT_TRUE(at::equal(file->tensor("t"), base.t()));
  EXPECT_TRUE(at::equal(file->tensor("row"), base[1]));
  EXPECT_EQ(file->metadata().at("format"), "pt");
}

TEST_F(SafetensorsTest, PythonLibraryReadsOurFiles) {
  auto original = SafetensorsFile::open(kReference + "/all_dtypes.safetensors");
  write_safetensors(temp("ours.safetensors"), all_tensors_of(*original), original->metadata());
  write_sharded_safetensors(temp("model"), all_tensors_of(*original), 600, "model", original->metadata());
  const std::string script = temp("check.py");
  write_file_atomic(script, R"(import json, os, sys, torch
from safetensors import safe_open
def load(path):
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
want, want_meta = load(sys.argv[1])
got, got_meta = load(sys.argv[2])
assert got_meta == want_meta, (got_meta, want_meta)
folder = sys.argv[3]
index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))
sharded = {}
for shard in sorted(set(index["weight_map"].values())):
    sharded.update(load(os.path.join(folder, shard))[0])
for tensors in (got, sharded):
    assert sorted(tensors) == sorted(want), (sorted(tensors), sorted(want))
    for k, t in want.items():
        assert tensors[k].dtype == t.dtype and tensors[k].shape == t.shape, k
        assert torch.equal(tensors[k].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), k
assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in want.values())
print("ok")
)");
  const std::string command = std::string("\"") + AUTOTRAIN_PYTHON + "\" " + script + " " + kReference +
                              "/all_dtypes.safetensors " + temp("ours.safetensors") + " " + temp("model");
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

TEST_F(SafetensorsTest, ShardedWriterSplitsByBytesAndWritesTheIndex) {
  NamedTensors tensors;
  for (int i = 0; i < 5; ++i) tensors.emplace_back("layer." + std::to_string(i), at::full({25}, float(i)));  // 100 B
  fs::create_directories(temp("m"));
  write_safetensors(temp("m/model.safetensors"), {});  // a stale single file from an earlier save
  const auto written = write_sharded_safetensors(temp("m"), tensors, 250);
  ASSERT_EQ(written.size(), 4u);  // 2 + 2 + 1 tensors, then the index
  EXPECT_EQ(fs::path(written[0]).filename(), "model-00001-of-00003.safetensors");
  EXPECT_EQ(fs::path(written[3]).filename(), "model.safetensors.index.json");
  EXPECT_FALSE(fs::exists(temp("m/model.safetensors")));
  Checkpoint checkpoint = Checkpoint::open(temp("m"));
  ASSERT_EQ(checkpoint.names().size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(at::equal(checkpoint.tensor("layer." + std::to_string(i)), tensors[i].second));
  EXPECT_EQ(fs::path(checkpoint.path_of("layer.4")).filename(), "model-00003-of-00003.safetensors");
  EXPECT_EQ(json::parse(read_file(written[3]))["metadata"]["total_size"], 500);

  // Saved again small enough for one file: the shards and the index go.
  const auto again = write_sharded_safetensors(temp("m"), tensors, 1 << 20);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(std::distance(fs::directory_iterator(temp("m")), fs::directory_iterator()), 1);
  EXPECT_EQ(Checkpoint::open(temp("m")).names().size(), 5u);
}

TEST_F(SafetensorsTest, WriterRefusesDuplicateNamesAndUnsupportedDtypes) {
  EXPECT_THROW(write_safetensors(temp("d.safetensors"), {{"a", at::zeros({1})}, {"a", at::zeros({1})}}), Error);
  try {
    write_safetensors(temp("d.safetensors"), {{"complex", at::zeros({2}, at::kComplexFloat)}});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("complex"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(temp("d.safetensors")));
}

// The streamed writer: each tensor is produced, written and reported before the next is produced, in data
// order (largest elements first), and the file is the one the in-memory writer gives.
TEST_F(SafetensorsTest, StreamedWriterHoldsOneTensorAtATime) {
  const NamedTensors tensors = {{"half", at::arange(4, at::kHalf)}, {"float", at::arange(3, at::kFloat)},
                                {"long", at::arange(2, at::kLong)}, {"scalar", at::scalar_tensor(7, at::kFloat)}};
  write_safetensors(temp("whole.safetensors"), tensors);
  std::vector<PlannedTensor> plan;
  for (const auto& [name, tensor] : tensors) plan.push_back({name, tensor.scalar_type(), tensor.sizes().vec()});
  std::vector<std::string> events;
  auto produce = [&](const PlannedTensor& planned) {
    events.push_back("produce " + planned.name);
    for (const auto& [name, tensor] : tensors)
      if (name == planned.name) return tensor;
    return at::Tensor();
  };
  auto written = [&](const PlannedTensor& planned) { events.push_back("written " + planned.name); };
  write_safetensors_streamed(temp("streamed.safetensors"), plan, produce, {{"format", "pt"}}, written);
  EXPECT_EQ(events, (std::vector<std::string>{"produce long", "written long", "produce float", "written float",
                                              "produce scalar", "written scalar", "produce half", "written half"}));
  EXPECT_EQ(read_file(temp("streamed.safetensors")), read_file(temp("whole.safetensors")));
}

TEST_F(SafetensorsTest, StreamedWriterRefusesATensorOtherThanPlanned) {
  const std::vector<PlannedTensor> plan = {{"w", at::kBFloat16, {2, 3}}};
  try {
    write_safetensors_streamed(temp("s.safetensors"), plan, [](const PlannedTensor&) { return at::zeros({2, 3}); });
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"w\" was planned as BFloat16 [2, 3] but produced as Float [2, 3]"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(temp("s.safetensors")));
}

// ---- bad input: every one an Error naming the file (and the tensor), never a crash ----------------

class SafetensorsBadInput : public SafetensorsTest {
 protected:
  // A good file: "a" F32[2] at [0, 8), "b" F32[2] at [8, 16).
  void SetUp() override {
    SafetensorsTest::SetUp();
    good_ = temp("good.safetensors");
    write_safetensors(good_, {{"a", at::tensor({1.0f, 2.0f})}, {"b", at::tensor({3.0f, 4.0f})}});
    const std::string bytes = read_file(good_);
    uint64_t size = 0;
    std::memcpy(&size, bytes.data(), 8);
    header_text_ = bytes.substr(8, size);
    data_ = bytes.substr(8 + size);
  }

  // The good file with its header JSON text replaced (the length field follows unless `length` is given).
  std::string with_header_text(const std::string& text, std::optional<uint64_t> length = std::nullopt) {
    std::string bytes(8, '\0');
    const uint64_t size = length.value_or(text.size());
    std::memcpy(bytes.data(), &size, 8);
    const std::string path = temp("bad.safetensors");
    write_file_atomic(path, bytes + text + data_);
    return path;
  }
  std::string with_header(const std::function<void(json&)>& mutate) {
    json header = json::parse(header_text_);
    mutate(header);
    return with_header_text(header.dump());
  }

  // Opening `path` (then reading every tensor) fails with an Error whose message names the file and `tensor`.
  void expect_error(const std::string& path, const std::string& tensor = "", const std::string& says = "") {
    try {
      auto file = SafetensorsFile::open(path);
      for (const std::string& name : file->names()) file->tensor(name);
      ADD_FAILURE() << "no error for " << path;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path), std::string::npos) << message;
      if (!tensor.empty()) EXPECT_NE(message.find("\"" + tensor + "\""), std::string::npos) << message;
      if (!says.empty()) EXPECT_NE(message.find(says), std::string::npos) << message;
      for (char c : message) EXPECT_TRUE(c >= 0x20 && c <= 0x7e) << "not one printable line: " << message;
    }
  }

  std::string good_, header_text_, data_;
};

TEST_F(SafetensorsBadInput, GoodFileOpens) {
  auto file = SafetensorsFile::open(good_);
  EXPECT_EQ(file->names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(file->tensor("b")[1].item<float>(), 4.0f);
}

TEST_F(SafetensorsBadInput, TruncatedFiles) {
  const std::string bytes = read_file(good_);
  write_file_atomic(temp("short.safetensors"), bytes.substr(0, 5));
  expect_error(temp("short.safetensors"), "", "too short");
  write_file_atomic(temp("empty.safetensors"), "");
  expect_error(temp("empty.safetensors"));
  write_file_atomic(temp("cut.safetensors"), bytes.substr(0, bytes.size() - 3));  // inside "b"'s data
  expect_error(temp("cut.safetensors"), "b", "past the data section");
  write_file_atomic(temp("cut_header.safetensors"), bytes.substr(0, 20));
  expect_error(temp("cut_header.safetensors"), "", "past the end of the file");
}

TEST_F(SafetensorsBadInput, HeaderLengthLargerThanTheFile) {
  expect_error(with_header_text(header_text_, header_text_.size() + data_.size() + 1), "", "past the end of the file");
}

TEST_F(SafetensorsBadInput, AbsurdHeaderLength) {
  expect_error(with_header_text(header_text_, uint64_t(1) << 62), "", "absurd");
  expect_error(with_header_text(header_text_, ~uint64_t(0)), "", "absurd");
}

TEST_F(SafetensorsBadInput, HeaderThatIsNotJsonOrNotAnObject) {
  expect_error(with_header_text("{\"a\": {\"dtype\": "), "", "not valid JSON");
  expect_error(with_header_text(std::string("\xff\xfe garbage", 10)), "", "not valid JSON");
  expect_error(with_header_text("[1, 2, 3]"), "", "not an object");
  expect_error(with_header_text(""), "", "not valid JSON");
}

TEST_F(SafetensorsBadInput, OverlappingOffsets) {
  expect_error(with_header([](json& h) { h["b"]["data_offsets"] = {4, 12}; }), "a", "overlap");
}

TEST_F(SafetensorsBadInput, OffsetsOutOfRange) {
  expect_error(with_header([](json& h) { h["b"]["data_offsets"] = {16, 24}; }), "b", "past the data section");
  expect_error(with_header([](json& h) { h["b"]["data_offsets"] = {~uint64_t(0) - 7, ~uint64_t(0)}; }), "b");
}

TEST_F(SafetensorsBadInput, EndBeforeBegin) {
  expect_error(with_header([](json& h) { h["b"]["data_offsets"] = {16, 8}; }), "b", "end before they begin");
}

TEST_F(SafetensorsBadInput, MalformedEntries) {
  expect_error(with_header([](json& h) { h["b"]["data_offsets"] = {8}; }), "b", "data_offsets");
  expect_error(with_header([](json& h) { h["b"]["data_offsets"] = {-8, 16}; }), "b", "data_offsets");
  expect_error(with_header([](json& h) { h["b"]["data_offsets"] = "8-16"; }), "b", "data_offsets");
  expect_error(with_header([](json& h) { h["b"].erase("dtype"); }), "b", "dtype");
  expect_error(with_header([](json& h) { h["b"]["shape"] = {-2}; }), "b", "shape");
  expect_error(with_header([](json& h) { h["b"]["shape"] = {2.0}; }), "b", "shape");
  expect_error(with_header([](json& h) { h["b"] = 7; }), "b");
  expect_error(with_header([](json& h) { h["__metadata__"] = {{"format", 1}}; }), "", "__metadata__");
  expect_error(with_header([](json& h) { h["__metadata__"] = {1, 2}; }), "", "__metadata__");
}

TEST_F(SafetensorsBadInput, UnknownDtype) {
  expect_error(with_header([](json& h) { h["b"]["dtype"] = "Q4_K"; }), "b", "unsupported dtype Q4_K");
}

TEST_F(SafetensorsBadInput, KnownDtypeWeDoNotReadFailsOnlyWhenAsked) {
  const std::string path = with_header([](json& h) { h["b"] = {{"dtype", "F64"}, {"shape", {1}}, {"data_offsets", {8, 16}}}; });
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->tensor("a")[0].item<float>(), 1.0f);
  expect_error(path, "b", "unsupported dtype F64");
}

TEST_F(SafetensorsBadInput, ShapeAndSizeDisagree) {
  expect_error(with_header([](json& h) { h["b"]["shape"] = {3}; }), "b", "needs 12 bytes");
  expect_error(with_header([](json& h) { h["b"]["shape"] = {2, 0}; }), "b", "needs 0 bytes");
  // 2^32 * 2^32 elements: the product overflows 64 bits and must not wrap around to a small number.
  expect_error(with_header([](json& h) { h["b"]["shape"] = {uint64_t(1) << 32, uint64_t(1) << 32, 0}; }), "b", "overflow");
  expect_error(with_header([](json& h) { h["b"]["shape"] = {uint64_t(1) << 62}; }), "b", "overflow");
}

TEST_F(SafetensorsBadInput, DuplicateNames) {
  std::string text = header_text_;
  text.replace(text.find("\"b\""), 3, "\"a\"");
  expect_error(with_header_text(text), "a", "twice");
}

class SafetensorsCheckpointBadInput : public SafetensorsTest {
 protected:
  // A two-shard copy of the oracle's sharded folder that a test may break.
  void SetUp() override {
    SafetensorsTest::SetUp();
    fs::copy(kReference + "/sharded", temp("model"));
    index_ = temp("model/model.safetensors.index.json");
  }
  void expect_error(const std::vector<std::string>& named) {
    try {
      Checkpoint::open(temp("model"));
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      for (const std::string& part : named) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  }
  std::string index_;
};

TEST_F(SafetensorsCheckpointBadInput, MissingShard) {
  fs::remove(temp("model/model-00002-of-00002.safetensors"));
  expect_error({index_, "\"model-00002-of-00002.safetensors\"", "missing"});
}

TEST_F(SafetensorsCheckpointBadInput, TensorMissingFromItsShard) {
  json index = json::parse(read_file(index_));
  index["weight_map"]["model.layers.1.self_attn.o_proj.weight"] = "model-00001-of-00002.safetensors";
  write_file_atomic(index_, index.dump());
  expect_error({index_, "\"model.layers.1.self_attn.o_proj.weight\"", "model-00001-of-00002.safetensors"});
}

TEST_F(SafetensorsCheckpointBadInput, BadShardIsNamed) {
  write_file_atomic(temp("model/model-00002-of-00002.safetensors"), std::string(8, '\xff'));
  expect_error({temp("model/model-00002-of-00002.safetensors"), "absurd"});
}

TEST_F(SafetensorsCheckpointBadInput, IndexWithoutWeightMapOrWithDuplicates) {
  write_file_atomic(index_, R"({"metadata": {}})");
  expect_error({index_, "weight_map"});
  write_file_atomic(index_, R"({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors",
                                               "lm_head.weight": "model-00001-of-00002.safetensors"}})");
  expect_error({index_, "\"lm_head.weight\"", "twice"});
}

TEST_F(SafetensorsCheckpointBadInput, FolderWithoutWeights) {
  fs::create_directories(temp("nothing"));
  try {
    Checkpoint::open(temp("nothing"));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace autotrain
