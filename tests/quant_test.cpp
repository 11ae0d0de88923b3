// 4-bit quantization against bitsandbytes (fixtures written by tests/reference/nf4.py): packed bytes and
// absmax identical, dequantized values identical.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/quant.h"
#include "kernel_reference.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kDir = std::string(AUTOTRAIN_FIXTURES_DIR) + "/reference/nf4";

at::ScalarType dtype_named(const std::string& name) {
  if (name == "float32") return at::kFloat;
  if (name == "bfloat16") return at::kBFloat16;
  if (name == "float16") return at::kHalf;
  if (name == "uint8") return at::kByte;
  throw std::runtime_error("dtype " + name);
}

at::Tensor load(const std::string& c, const std::string& name, const nlohmann::json& spec) {
  std::string bytes = read_file(kDir + "/" + c + "." + name + ".bin");
  std::vector<int64_t> shape = spec["shape"].get<std::vector<int64_t>>();
  at::Tensor t = at::empty(shape, dtype_named(spec["dtype"]));
  EXPECT_EQ(static_cast<size_t>(t.nbytes()), bytes.size()) << c << "." << name;
  std::memcpy(t.data_ptr(), bytes.data(), std::min<size_t>(bytes.size(), t.nbytes()));
  return t;
}

TEST(Quant4bit, BytesAndValuesEqualBitsandbytes) {
  auto cases = nlohmann::json::parse(read_file(kDir + "/cases.json"));
  ASSERT_GE(cases.size(), 200u);
  for (const auto& c : cases) {
    const std::string id = c["case"];
    const auto& tensors = c["tensors"];
    at::Tensor weight = load(id, "weight", tensors["weight"]);
    Quantized4bit q = quantize_4bit(weight, parse_quant_type(c["quant_type"]), c["blocksize"], c["double"]);
    SCOPED_TRACE(id + " " + c["quant_type"].get<std::string>() + " shape " + tensors["weight"]["shape"].dump() +
                 " " + tensors["weight"]["dtype"].get<std::string>() + " blocksize " + c["blocksize"].dump() +
                 (c["double"].get<bool>() ? " double" : ""));
    // Exact: the same fp32 arithmetic and the same tie rules, so not one byte may differ.
    ASSERT_TRUE(at::equal(q.packed, load(id, "packed", tensors["packed"])));
    at::Tensor absmax = load(id, "absmax", tensors["absmax"]);
    if (!c["double"]) {
      ASSERT_TRUE(at::equal(q.absmax, absmax));
    } else {
      EXPECT_EQ(q.offset, c["offset"].get<float>());
      ASSERT_TRUE(at::equal(q.nested.absmax, load(id, "nested_absmax", tensors["nested_absmax"])));
      at::Tensor code = at::from_blob(const_cast<float*>(dynamic_map_8bit().data()), {256}, at::kFloat);
      ASSERT_TRUE(at::equal(code, load(id, "nested_code", tensors["nested_code"])));
      // The 8-bit codes of the absmax: ours is the nearest map entry; bitsandbytes' CPU kernel finds it
      // with an approximate table search (BinSearch "Direct2") that now and then lands one entry off
      // the nearest (seen: 1 in 1000). So: every code within one entry, and almost all identical.
      at::Tensor step = (q.absmax.to(at::kInt) - absmax.to(at::kInt)).abs();
      EXPECT_LE(step.max().item<int>(), 1);
      EXPECT_LE(step.sum().item<int>(), std::max<int64_t>(1, absmax.numel() / 50));
      q.absmax = absmax;  // dequantization is then held to the oracle exactly
      q.nested.codes = absmax;
    }
    at::Tensor dequantized = dequantize_4bit(q, weight.scalar_type());
    at::Tensor expected = load(id, "dequantized", tensors["dequantized"]);
    // bitsandbytes returns a 1-D weight as (1, n); the values are what count, the shape is the weight's.
    EXPECT_EQ(dequantized.sizes(), weight.sizes());
    ASSERT_TRUE(at::equal(dequantized.reshape(-1), expected.reshape(-1)))
        << "max |diff| " << (dequantized.to(at::kFloat) - expected.to(at::kFloat)).abs().max().item<float>()
        << " shapes " << dequantized.sizes() << " vs " << expected.sizes();
  }
}

TEST(Quant4bit, StorageIsHalfAByteAPlusAbsmax) {
  at::Tensor w = at::randn({4096, 4096});
  Quantized4bit plain = quantize_4bit(w, QuantType::nf4, 64, false);
  Quantized4bit nested = quantize_4bit(w, QuantType::nf4, 64, true);
  const double per_param_plain = static_cast<double>(plain.bytes()) / static_cast<double>(w.numel());
  const double per_param_nested = static_cast<double>(nested.bytes()) / static_cast<double>(w.numel());
  EXPECT_NEAR(per_param_plain, 0.5 + 4.0 / 64, 1e-6);        // QLoRA paper: 0.5 + 0.0625 B/param
  EXPECT_NEAR(per_param_nested, 0.5 + 1.0 / 64, 1e-3);       // ~0.016 with double quantization
}

// The torch-ops dequantization (what a weight on a GPU uses) against the byte loop, on the CPU: both take
// one fp32 product code * absmax per element and then cast, so they must agree bit for bit.
TEST(Quant4bit, TorchOpsDequantizationEqualsTheLoop) {
  at::manual_seed(11);
  const std::vector<std::vector<int64_t>> shapes = {{1}, {7}, {3, 5}, {33, 17}, {64, 65}, {5, 301}};
  for (QuantType type : {QuantType::nf4, QuantType::fp4}) {
    for (bool double_quantize : {false, true}) {
      for (int64_t blocksize : {64, 256}) {
        for (const auto& shape : shapes) {
          for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
            at::Tensor weight = at::randn(shape).mul_(0.05).to(dtype);
            Quantized4bit q = quantize_4bit(weight, type, blocksize, double_quantize);
            SCOPED_TRACE(::testing::Message() << (type == QuantType::nf4 ? "nf4" : "fp4") << " shape "
                                              << at::IntArrayRef(shape) << " blocksize " << blocksize << " "
                                              << dtype << (double_quantize ? " double" : ""));
            at::Tensor loop = dequantize_4bit(q, dtype), ops = dequantize_4bit_torch(q, dtype);
            EXPECT_EQ(ops.sizes(), weight.sizes());
            EXPECT_EQ(ops.scalar_type(), dtype);
            EXPECT_TRUE(at::equal(ops, loop));
            if (double_quantize) EXPECT_TRUE(at::equal(dequantize_blockwise_8bit_torch(q.nested),
                                                       dequantize_blockwise_8bit(q.nested)));
          }
        }
      }
    }
  }
}

// A weight whose packed bytes are in the tensor-core GEMV's gemv_tiles layout (generation with
// AUTOTRAIN_GEMV_TILES=1; here tiled by tests/kernel_reference's torch reshapes, an independent formulation):
// packed_rows gives the flat bytes back, and both dequantizations the values of the rows layout, bit for bit. Rows
// not a multiple of the 16-row tile (the padding is cut off), several chunks of 64 columns, blocks spanning rows.
TEST(Quant4bit, TilesLayoutDequantizesAsTheRowsLayout) {
  at::manual_seed(12);
  for (const auto& shape : std::vector<std::vector<int64_t>>{{1, 64}, {37, 128}, {50, 320}})
    for (bool double_quantize : {false, true})
      for (int64_t blocksize : {64, 256}) {
        SCOPED_TRACE(::testing::Message() << at::IntArrayRef(shape) << " blocksize " << blocksize
                                          << (double_quantize ? " double" : ""));
        const Quantized4bit rows = quantize_4bit(at::randn(shape), QuantType::nf4, blocksize, double_quantize);
        Quantized4bit tiled = rows;
        tiled.packed = testing::gemv_tiles_of(rows);
        tiled.gemv_tiles = true;
        ASSERT_GT(tiled.packed.numel(), rows.packed.numel());  // rows padded to whole tiles (none is a multiple of 16)
        EXPECT_TRUE(at::equal(packed_rows(tiled), rows.packed));
        EXPECT_TRUE(at::equal(packed_rows(rows), rows.packed));
        for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
          EXPECT_TRUE(at::equal(dequantize_4bit(tiled, dtype), dequantize_4bit(rows, dtype)));
          EXPECT_TRUE(at::equal(dequantize_4bit_torch(tiled, dtype), dequantize_4bit(rows, dtype)));
        }
      }
  Quantized4bit odd = quantize_4bit(at::randn({4, 96}));
  odd.gemv_tiles = true;
  EXPECT_THROW(packed_rows(odd), Error);
}

// The torch-ops quantization (what a weight bound for a GPU is quantized with) against the loop, on the CPU.
TEST(Quant4bit, TorchOpsQuantizationEqualsTheLoop) { testing::expect_torch_quantization_equals_the_loop(at::kCPU); }

TEST(Quant4bit, BadBlocksizeIsAnError) { EXPECT_THROW(quantize_4bit(at::randn({8}), QuantType::nf4, 48), Error); }

}  // namespace
}  // namespace autotrain
