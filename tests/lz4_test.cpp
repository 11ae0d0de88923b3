// The LZ4 decoders against liblz4's output through pyarrow (fixture written by tests/reference/lz4_codec.py): raw
// blocks (Parquet's LZ4_RAW), frames (Arrow's LZ4_FRAME) and Hadoop's framing (Parquet's old LZ4, built here from
// raw blocks as Hadoop's codec lays them out).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/parquet.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kDir = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/lz4/";

std::string decompress(Lz4Format format, const std::string& data, size_t size) {
  return lz4_decompress(format, reinterpret_cast<const uint8_t*>(data.data()), data.size(), size, "case");
}

std::string big_endian(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

std::vector<std::string> case_names() {
  return nlohmann::json::parse(read_file(kDir + "cases.json"))["cases"].get<std::vector<std::string>>();
}

TEST(Lz4, BlocksAndFramesDecodeToLiblz4sInput) {
  ASSERT_EQ(case_names().size(), 4u);
  for (const std::string& name : case_names()) {
    SCOPED_TRACE(name);
    const std::string plain = read_file(kDir + name + ".plain");
    EXPECT_EQ(decompress(Lz4Format::block, read_file(kDir + name + ".raw"), plain.size()), plain);
    EXPECT_EQ(decompress(Lz4Format::frame, read_file(kDir + name + ".frame"), plain.size()), plain);
    // Under Parquet's old LZ4 codec a writer may have put a plain block or a frame: both are read.
    EXPECT_EQ(decompress(Lz4Format::hadoop, read_file(kDir + name + ".raw"), plain.size()), plain);
    EXPECT_EQ(decompress(Lz4Format::hadoop, read_file(kDir + name + ".frame"), plain.size()), plain);
    // Hadoop's framing: the uncompressed and compressed sizes, big-endian, before the block.
    const std::string raw = read_file(kDir + name + ".raw");
    const std::string hadoop = big_endian(static_cast<uint32_t>(plain.size())) +
                               big_endian(static_cast<uint32_t>(raw.size())) + raw;
    EXPECT_EQ(decompress(Lz4Format::hadoop, hadoop, plain.size()), plain);
  }
}

TEST(Lz4, HadoopFramingOfSeveralChunks) {
  const auto sizes = nlohmann::json::parse(read_file(kDir + "cases.json"))["two_chunks"].get<std::vector<uint32_t>>();
  std::string framed;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::string chunk = read_file(kDir + "two_chunks.chunk" + std::to_string(i));
    framed += big_endian(sizes[i]) + big_endian(static_cast<uint32_t>(chunk.size())) + chunk;
  }
  const std::string plain = read_file(kDir + "two_chunks.plain");
  EXPECT_EQ(decompress(Lz4Format::hadoop, framed, plain.size()), plain);
}

// Every cut and a spread of single-byte changes of each compressed form: the exact output or an Error naming the
// data, never a crash or a read outside the input (the fuzz targets run the same under AddressSanitizer).
TEST(Lz4, DamagedDataIsAnErrorOrTheExactOutput) {
  int errors = 0;
  for (const std::string& name : {std::string("long_repeats"), std::string("mixed_300k")}) {
    const std::string plain = read_file(kDir + name + ".plain");
    for (const char* kind : {".raw", ".frame"}) {
      const std::string good = read_file(kDir + name + kind);
      const Lz4Format format = std::string(kind) == ".raw" ? Lz4Format::block : Lz4Format::frame;
      std::vector<std::string> damaged;
      for (size_t cut = 0; cut < good.size(); cut += 1 + good.size() / 97) damaged.push_back(good.substr(0, cut));
      for (size_t at = 0; at < good.size(); at += 1 + good.size() / 89) {
        std::string flipped = good;
        flipped[at] = static_cast<char>(flipped[at] ^ 0x5A);
        damaged.push_back(flipped);
      }
      for (const std::string& data : damaged) {
        try {
          EXPECT_EQ(decompress(format, data, plain.size()).size(), plain.size());
        } catch (const Error& e) {
          EXPECT_EQ(std::string(e.what()).rfind("case: ", 0), 0u) << e.what();
          ++errors;
        }
      }
    }
  }
  EXPECT_GT(errors, 300);
}

TEST(Lz4, SizesNoInputCanReachAreRefusedBeforeAllocating) {
  const std::string raw = read_file(kDir + "one_byte.raw");
  const std::string message = testing::error_message_of([&] { decompress(Lz4Format::block, raw, size_t(1) << 40); });
  EXPECT_NE(message.find("corrupt"), std::string::npos) << message;
}

}  // namespace
}  // namespace autotrain
