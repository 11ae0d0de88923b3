#include "fuzz_targets.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "autotrain/arrow.h"
#include "autotrain/chat_template.h"
#include "autotrain/config.h"
#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/imatrix.h"
#include "autotrain/parquet.h"
#include "autotrain/safetensors.h"
#include "autotrain/tokenizer.h"

namespace autotrain::fuzz {
namespace {

// A private scratch folder per process (libFuzzer may run several jobs side by side).
const std::filesystem::path& scratch() {
  static const std::filesystem::path folder = [] {
    auto path = std::filesystem::temp_directory_path() / ("autotrain-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch(), ignored);
    });
    return path;
  }();
  return folder;
}

std::string write_bytes(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = (scratch() / name).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs `load`; the loaders' documented answer to bad input (Error) is fine.
template <typename Load>
int expect_at_most_error(Load load) {
  try {
    load();
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace

int safetensors_header(const uint8_t* data, size_t size) {
  const std::string path = write_bytes("model.safetensors", data, size);
  return expect_at_most_error([&] {
    auto file = SafetensorsFile::open(path);
    for (const std::string& name : file->names()) {  // every tensor the header admits must be readable
      at::Tensor tensor = file->tensor(name);
      if (tensor.numel() > 0) (void)tensor.reshape({-1})[tensor.numel() - 1].item<double>();
    }
  });
}

int imatrix(const uint8_t* data, size_t size) {
  const std::string path = write_bytes("model.imatrix", data, size);
  return expect_at_most_error([&] { (void)load_imatrix(path); });
}

int training_params(const uint8_t* data, size_t size) {
  const std::string path = write_bytes("training_params.json", data, size);
  return expect_at_most_error([&] { (void)to_json(load_training_params(path)); });
}

int tokenizer_json(const uint8_t* data, size_t size) {
  static const bool config_written = [] {
    std::ofstream(scratch() / "tokenizer_config.json")
        << R"({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 32768})";
    return true;
  }();
  (void)config_written;
  write_bytes("tokenizer.json", data, size);
  return expect_at_most_error([&] {
    auto tokenizer = Tokenizer::load(scratch().string());
    for (const char* text : {"Hello, world! 123", "  tabs\tand\nnewlines  ", "한국어 中文 日本語 🙂", "<|endoftext|>x"}) {
      const std::vector<int64_t> ids = tokenizer->encode(text, /*add_special_tokens=*/true);
      (void)tokenizer->decode(ids);
    }
  });
}

int dataset(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the format (seeds keep their meaning: new formats go at the end).
  static const char* kExtensions[] = {".jsonl", ".json", ".csv", ".txt", ".parquet", ".jsonl.gz", ".csv.zst", ".arrow"};
  const std::string path = write_bytes(std::string("train") + kExtensions[data[0] % 8], data + 1, size - 1);
  // Parquet and Arrow files: every column of every row first (lists, structs, numbers), then the text column.
  const auto every_cell = [](const auto& file) {
    (void)file.rows();
    file.for_each_row(file.columns(), [](std::vector<OrderedJson>& cells, int64_t) { (void)cells; });
  };
  expect_at_most_error([&] {
    if (!is_columnar_file(path)) return;
    if (dataset_extension(path) == ".parquet") every_cell(ParquetFile::open(path));
    else every_cell(ArrowFile::open(path));
  });
  return expect_at_most_error([&] {
    size_t total = 0;
    for_each_text({path}, "text", [&](const std::string& text) { total += text.size(); });
  });
}

int chat_template(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const size_t nul = bytes.find('\0');
  const std::string source = bytes.substr(0, nul);
  const std::string cell = nul == std::string::npos ? "[{'role': 'user', 'content': 'Hi'}]" : bytes.substr(nul + 1);
  return expect_at_most_error([&] {
    const OrderedJson messages = conversation_of(OrderedJson(cell), "cell");
    (void)ChatTemplate(source, "template", {{"bos_token", "<s>"}, {"eos_token", "</s>"}}).apply(messages, true);
  });
}

int dataset_card(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const size_t nul = bytes.find('\0');
  const std::filesystem::path folder = scratch() / "card";
  static const bool made = [&] {  // a dataset folder whose files the card's configs may name
    for (const char* file : {"train.jsonl", "data/train-00000-of-00001.jsonl", "en/test.jsonl", "de/x/y.jsonl"}) {
      std::filesystem::create_directories((folder / file).parent_path());
      std::ofstream((folder / file).string()) << "{\"text\": \"a\"}\n";
    }
    return true;
  }();
  (void)made;
  std::ofstream((folder / "README.md").string(), std::ios::binary | std::ios::trunc) << bytes.substr(0, nul);
  const std::string split = nul == std::string::npos ? "train" : bytes.substr(nul + 1);
  return expect_at_most_error([&] {
    const DataFiles files = resolve_split_files(folder.string(), split);
    for_each_text(files, "text", [](const std::string&) {});
  });
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {{"safetensors_header", safetensors_header},
                                          {"training_params", training_params},
                                          {"tokenizer_json", tokenizer_json},
                                          {"dataset", dataset},
                                          {"chat_template", chat_template},
                                          {"dataset_card", dataset_card},
                                          {"imatrix", imatrix}};
  return all;
}

}  // namespace autotrain::fuzz
