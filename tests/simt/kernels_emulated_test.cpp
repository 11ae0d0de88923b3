// The 4-bit kernels of kernels/ (dequantization, the two GEMVs, the fused training matmul) run under the CPU
// emulator of tests/simt, against the same CPU references and bounds as tests/cuda_test.cpp holds them to on a GPU.
// This needs no GPU, so CI runs the kernels' indexing, tiling, partial tiles, barriers, warp collectives and
// cp.async pipeline on every change; timing, and the hardware's own arithmetic in the tensor cores, still need a
// GPU (tests/cuda_test.cpp, tools/bench_gpu).
//
// Each test runs twice per case under different emulator settings: cp.async copies landing at the thread's wait
// with threads run in ascending order, then copies landing at issue with threads in descending order (simt.h), so
// that a missing wait or barrier shows in one of them.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "autotrain/cuda_kernels.h"
#include "autotrain/cuda_ops.h"
#include "autotrain/quant.h"
#include "kernel_reference.h"
#include "simt.h"

namespace autotrain {
namespace {

using testing::expect_close_to_fp64;
using testing::gemv_tiles_of;
using testing::kernel_dtype_of;
using testing::scaled_code_weight;

const std::vector<simt::Options> kSettings{
    {simt::CopyTiming::at_wait, simt::ThreadOrder::ascending, 4},
    {simt::CopyTiming::at_issue, simt::ThreadOrder::descending, 4},
};

std::string describe(const simt::Options& o) {
  return std::string("copies land ") + (o.copies == simt::CopyTiming::at_wait ? "at wait" : "at issue") +
         ", threads " + (o.order == simt::ThreadOrder::ascending ? "ascending" : "descending");
}

// The kernels' view of a 4-bit weight in host memory (the emulator's "device" memory).
struct HostWeight {
  explicit HostWeight(const Quantized4bit& q) : q(q), view(four_bit_storage_view(this->q)) {
    const auto& values = dynamic_map_8bit();
    std::copy(values.begin(), values.end(), map.values);
  }
  Quantized4bit q;
  cuda::FourBitWeight view;
  cuda::DynamicMap map{};
};

void expect_ok(const char* problem) { ASSERT_EQ(problem, nullptr) << problem; }

// The fewest and the most reads of any of the `count` bytes at `bytes` by the kernels `action` launches (the
// emulator's count, see simt::watch), which stops watching afterwards.
template <typename Action>
std::pair<int64_t, int64_t> reads_during(const void* bytes, int64_t count, Action action) {
  simt::watch(bytes, static_cast<size_t>(count));
  action();
  const std::pair<int64_t, int64_t> reads = simt::watched_reads();
  simt::watch(nullptr, 0);
  return reads;
}
const std::pair<int64_t, int64_t> kReadOnce{1, 1};

// A fresh output for a kernel: NaN everywhere, so that an element it does not write fails the comparison.
at::Tensor output(int64_t rows, int64_t cols, at::ScalarType dtype) {
  return at::full({rows, cols}, std::numeric_limits<float>::quiet_NaN(), at::TensorOptions().dtype(dtype));
}

at::Tensor dequantize(const HostWeight& w, int64_t r0, int64_t r1, int64_t c0, int64_t c1, at::ScalarType dtype) {
  at::Tensor out = output(r1 - r0, c1 - c0, dtype);
  expect_ok(cuda::dequantize_4bit(w.view, &w.map, r0, r1, c0, c1, out.data_ptr(), kernel_dtype_of(dtype), nullptr));
  return out;
}

// x . W^T for the weight `view` (w's, or another layout of w's bytes) with w's map.
at::Tensor gemv(const cuda::FourBitWeight& view, const HostWeight& w, const at::Tensor& x, cuda::GemvKernel kernel) {
  at::Tensor y = output(x.size(0), view.rows, x.scalar_type());
  expect_ok(cuda::gemv_4bit(view, &w.map, x.data_ptr(), x.size(0), y.data_ptr(), kernel_dtype_of(x.scalar_type()),
                            nullptr, kernel));
  return y;
}

at::Tensor gemv(const HostWeight& w, const at::Tensor& x, cuda::GemvKernel kernel) { return gemv(w.view, w, x, kernel); }

// The tensor-core GEMV against the fp64 product at its defaults; every other pipeline depth gives the same sums bit
// for bit (the depth changes when bytes are read, not what is added in which order), and blocks of at most 4, 8 or
// 16 warps (which add in another order) are within the same bound.
void check_tensor_core_gemv(const HostWeight& w, const at::Tensor& x) {
  const at::ScalarType dtype = x.scalar_type();
  const at::Tensor reference = scaled_code_weight(w.q, dtype).t();
  at::Tensor y = gemv(w, x, cuda::GemvKernel::tensor_cores);
  expect_close_to_fp64(y, x, reference, dtype);
  for (int depth = 1; depth <= cuda::kMaxGemvDepth; ++depth) {
    if (depth == cuda::kDefaultGemvDepth) continue;
    cuda::set_gemv_pipeline_depth(depth);
    at::Tensor other = gemv(w, x, cuda::GemvKernel::tensor_cores);
    cuda::set_gemv_pipeline_depth(0);
    EXPECT_TRUE(at::equal(other, y)) << "pipeline depth " << depth << " against " << cuda::kDefaultGemvDepth;
  }
  for (int warps : {4, 8, cuda::kMaxGemvBlockWarps}) {
    SCOPED_TRACE("blocks of at most " + std::to_string(warps) + " warps");
    cuda::set_gemv_block_warps(warps);
    at::Tensor other = gemv(w, x, cuda::GemvKernel::tensor_cores);
    cuda::set_gemv_block_warps(0);
    expect_close_to_fp64(other, x, reference, dtype);
  }
}

at::Tensor matmul(const HostWeight& w, const at::Tensor& a, cuda::MatmulPass pass, cuda::MatmulTile tile) {
  const int64_t width = pass == cuda::MatmulPass::forward ? w.view.rows : w.view.cols;
  at::Tensor c = output(a.size(0), width, a.scalar_type());
  expect_ok(cuda::matmul_4bit(w.view, &w.map, a.data_ptr(), a.size(0), c.data_ptr(), kernel_dtype_of(a.scalar_type()),
                              pass, nullptr, tile));
  return c;
}

struct Shape {
  int64_t rows, cols;
};

std::string describe(bool dq, int64_t blocksize, Shape s, at::ScalarType dtype) {
  return std::string(dq ? "double-quantized " : "") + "blocksize " + std::to_string(blocksize) + " " +
         std::to_string(s.rows) + "x" + std::to_string(s.cols) + " " + c10::toString(dtype);
}

class EmulatedKernels : public ::testing::Test {
 protected:
  void TearDown() override { simt::set_options(simt::Options{}); }
};

// Bit for bit, as on a GPU: whole weights (the flat kernel), slices of rows, and blocks of columns that are
// 8-aligned (the vectorised path) and not. Grids of a few blocks on the 4 emulated SMs loop several times.
TEST_F(EmulatedKernels, DequantizeEqualsTheCpuBitForBit) {
  at::manual_seed(1);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (QuantType type : {QuantType::nf4, QuantType::fp4})
      for (bool dq : {false, true})
        for (Shape s : std::vector<Shape>{{1, 1}, {3, 7}, {37, 53}, {129, 200}, {130, 1024}, {300, 4160}}) {
          HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), type, 64, dq));
          for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
            SCOPED_TRACE(describe(o) + ", " + (type == QuantType::nf4 ? "nf4 " : "fp4 ") + describe(dq, 64, s, dtype));
            at::Tensor expected = dequantize_4bit(w.q, dtype);
            EXPECT_TRUE(at::equal(dequantize(w, 0, s.rows, 0, s.cols, dtype), expected));
            const int64_t first = s.rows / 3, last = s.rows - s.rows / 4;
            EXPECT_TRUE(at::equal(dequantize(w, first, last, 0, s.cols, dtype), expected.slice(0, first, last)));
            const int64_t a = 8 * (s.cols / 40), b = s.cols - a, c = s.cols / 3, d = s.cols - s.cols / 4;
            EXPECT_TRUE(
                at::equal(dequantize(w, first, last, a, b, dtype), expected.slice(0, first, last).slice(1, a, b)));
            EXPECT_TRUE(at::equal(dequantize(w, 0, s.rows, c, d, dtype), expected.slice(1, c, d)));
          }
        }
  }
}

// The CUDA-core GEMV (fp32 codes): odd shapes through its element-by-element kernel, aligned ones through the
// vectorised one, including rows of 4160 columns (more than one round of 4 chunks of 1024).
TEST_F(EmulatedKernels, GemvMatchesTheCpuReference) {
  at::manual_seed(2);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (bool dq : {false, true})
      for (Shape s : std::vector<Shape>{{3, 7}, {37, 53}, {5, 96}, {130, 1024}, {9, 4160}})
        for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16})
          for (int64_t m : {1, 3, 8}) {
            SCOPED_TRACE(describe(o) + ", " + describe(dq, 64, s, dtype) + " m " + std::to_string(m));
            HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, dq));
            at::Tensor x = at::randn({m, s.cols}).to(dtype);
            expect_close_to_fp64(gemv(w, x, cuda::GemvKernel::cuda_cores), x, scaled_code_weight(w.q, at::kFloat).t(),
                                 dtype);
          }
  }
}

// The tensor-core GEMV (mma.m16n8k16 with code values rounded to the dtype): rows not a multiple of its 16-row
// tile, 1 to 65 chunks of 64 columns (fewer chunks than warps, uneven shares, two rounds of chunks), and more tiles
// than the grid's blocks (4 emulated SMs, one block each), so that each block's pipeline walks several tiles; every
// pipeline depth, and smaller blocks.
TEST_F(EmulatedKernels, TensorCoreGemvMatchesTheCpuReference) {
  at::manual_seed(5);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (bool dq : {false, true})
      for (int64_t blocksize : {64, 256})
        for (Shape s : std::vector<Shape>{{1, 64}, {37, 128}, {130, 1024}, {16, 448}, {50, 4160}})
          for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
            for (int64_t m : {1, 3, 8}) {
              SCOPED_TRACE(describe(o) + ", " + describe(dq, blocksize, s, dtype) + " m " + std::to_string(m));
              HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, blocksize, dq));
              at::Tensor x = at::randn({m, s.cols}).to(dtype);
              check_tensor_core_gemv(w, x);
            }
  }
}

// `automatic` is the tensor-core kernel wherever it applies, for one row of x as for several, and the CUDA-core one
// elsewhere (fp32, columns not a multiple of 64).
TEST_F(EmulatedKernels, GemvPicksTheTensorCoreKernelWhereItApplies) {
  at::manual_seed(6);
  struct Case {
    Shape shape;
    at::ScalarType dtype;
    bool tensor_cores;
  };
  for (Case c : std::vector<Case>{{{40, 256}, at::kBFloat16, true}, {{40, 256}, at::kHalf, true},
                                  {{40, 256}, at::kFloat, false}, {{40, 96}, at::kBFloat16, false}})
    for (int64_t m : {1, 2}) {
      SCOPED_TRACE(describe(true, 64, c.shape, c.dtype) + " m " + std::to_string(m));
      HostWeight w(quantize_4bit(at::randn({c.shape.rows, c.shape.cols}), QuantType::nf4, 64, true));
      at::Tensor x = at::randn({m, c.shape.cols}).to(c.dtype);
      const auto expected = c.tensor_cores ? cuda::GemvKernel::tensor_cores : cuda::GemvKernel::cuda_cores;
      const auto other = c.tensor_cores ? cuda::GemvKernel::cuda_cores : cuda::GemvKernel::tensor_cores;
      at::Tensor y = gemv(w, x, cuda::GemvKernel::automatic);
      EXPECT_TRUE(at::equal(y, gemv(w, x, expected)));
      if (c.tensor_cores) EXPECT_FALSE(at::equal(y, gemv(w, x, other))) << "the two kernels round differently";
    }
}

// ys[i] = x . W_i^T for the weights of a group, through gemv_4bit_group.
std::vector<at::Tensor> gemv_group(const std::vector<const HostWeight*>& weights, const at::Tensor& x) {
  std::vector<at::Tensor> ys;
  std::vector<cuda::FourBitWeight> views;
  std::vector<void*> pointers;
  for (const HostWeight* w : weights) {
    ys.push_back(output(x.size(0), w->view.rows, x.scalar_type()));
    views.push_back(w->view);
    pointers.push_back(ys.back().data_ptr());
  }
  expect_ok(cuda::gemv_4bit_group(views.data(), static_cast<int>(views.size()), &weights[0]->map, x.data_ptr(),
                                  x.size(0), pointers.data(), kernel_dtype_of(x.scalar_type()), nullptr));
  return ys;
}

// q-, k- and v-like weights of one x in one launch (rows not multiples of the 16-row tile; 10 tiles for 4 emulated
// SMs, so that blocks walk tiles of different weights), and two of them (gate and up): each y is its weight's
// tensor-core GEMV bit for bit with the blocks' warps fixed (automatic, the group's tile count may pick other warps:
// within the same bound); and each packed byte of each weight is read once.
TEST_F(EmulatedKernels, TensorCoreGemvOfAGroupEqualsEachWeightAlone) {
  at::manual_seed(13);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (bool dq : {false, true})
      for (int64_t cols : {448, 1024})
        for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
          for (int64_t m : {1, 3, 8}) {
            std::vector<HostWeight> weights;
            for (int64_t rows : {72, 20, 37})
              weights.emplace_back(quantize_4bit(at::randn({rows, cols}), QuantType::nf4, 64, dq));
            const at::Tensor x = at::randn({m, cols}).to(dtype);
            for (int count : {3, 2}) {
              SCOPED_TRACE(describe(o) + ", " + describe(dq, 64, Shape{72, cols}, dtype) + " m " + std::to_string(m) +
                           ", " + std::to_string(count) + " weights");
              std::vector<const HostWeight*> group;
              for (int i = 0; i < count; ++i) group.push_back(&weights[i]);
              cuda::set_gemv_block_warps(8);
              const int64_t launches = simt::launches();
              std::vector<at::Tensor> ys = gemv_group(group, x);
              EXPECT_EQ(simt::launches() - launches, 1) << "one launch for the group";
              for (int i = 0; i < count; ++i)
                EXPECT_TRUE(at::equal(ys[i], gemv(weights[i], x, cuda::GemvKernel::tensor_cores))) << "weight " << i;
              cuda::set_gemv_block_warps(0);
              ys = gemv_group(group, x);
              for (int i = 0; i < count; ++i)
                expect_close_to_fp64(ys[i], x, scaled_code_weight(weights[i].q, dtype).t(), dtype);
            }
          }
    // Whole tiles (a partial one's rows past the end repeat the last row), 8 tiles.
    std::vector<HostWeight> whole;
    for (int64_t rows : {48, 16, 64})
      whole.emplace_back(quantize_4bit(at::randn({rows, 1024}), QuantType::nf4, 64, true));
    const at::Tensor x = at::randn({1, 1024}).to(at::kBFloat16);
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(reads_during(whole[i].view.packed, whole[i].q.packed.numel(),
                             [&] { gemv_group({&whole[0], &whole[1], &whole[2]}, x); }),
                kReadOnce)
          << "weight " << i;
  }
}

// Weights that cannot share a launch (fp32, another block size or kind of scales) go one by one, each as gemv_4bit
// gives it; weights of other columns than x's, no weight or too many are refused.
TEST_F(EmulatedKernels, GemvGroupTakesWeightsItCannotJoinOneByOne) {
  at::manual_seed(14);
  HostWeight q(quantize_4bit(at::randn({40, 256}), QuantType::nf4, 64, true));
  HostWeight other_blocksize(quantize_4bit(at::randn({24, 256}), QuantType::nf4, 128, true));
  HostWeight absmax(quantize_4bit(at::randn({24, 256}), QuantType::nf4, 64, false));
  HostWeight fp4(quantize_4bit(at::randn({24, 256}), QuantType::fp4, 64, true));
  for (const HostWeight* second : {&other_blocksize, &absmax, &fp4})
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      SCOPED_TRACE(c10::toString(dtype));
      const at::Tensor x = at::randn({2, 256}).to(dtype);
      const int64_t launches = simt::launches();
      std::vector<at::Tensor> ys = gemv_group({&q, second}, x);
      EXPECT_EQ(simt::launches() - launches, 2) << "one launch per weight";
      EXPECT_TRUE(at::equal(ys[0], gemv(q, x, cuda::GemvKernel::automatic)));
      EXPECT_TRUE(at::equal(ys[1], gemv(*second, x, cuda::GemvKernel::automatic)));
    }
  HostWeight narrow(quantize_4bit(at::randn({24, 128}), QuantType::nf4, 64, true));
  const at::Tensor x = at::randn({1, 256}).to(at::kBFloat16);
  at::Tensor y0 = output(1, 40, at::kBFloat16), y1 = output(1, 24, at::kBFloat16);
  cuda::FourBitWeight views[4] = {q.view, narrow.view, q.view, q.view};
  void* ys[4] = {y0.data_ptr(), y1.data_ptr(), y0.data_ptr(), y0.data_ptr()};
  const auto bf16 = cuda::DType::bf16;
  EXPECT_STREQ(cuda::gemv_4bit_group(views, 2, &q.map, x.data_ptr(), 1, ys, bf16, nullptr),
               "gemv_4bit_group: the weights must have the columns of x");
  EXPECT_NE(cuda::gemv_4bit_group(views, 0, &q.map, x.data_ptr(), 1, ys, bf16, nullptr), nullptr);
  EXPECT_NE(cuda::gemv_4bit_group(views + 2, 2, &q.map, x.data_ptr(), 0, ys, bf16, nullptr), nullptr);
  EXPECT_NE(cuda::gemv_4bit_group(views, cuda::kMaxGemvGroup + 1, &q.map, x.data_ptr(), 1, ys, bf16, nullptr),
            nullptr);
}

// A weight in the gemv_tiles layout, written by tile_4bit_for_gemv from the rows layout.
struct TiledWeight {
  explicit TiledWeight(const HostWeight& w)
      : bytes(at::full({cuda::gemv_tiles_bytes(w.view.rows, w.view.cols)}, 0xAB, at::kByte)) {
    expect_ok(cuda::tile_4bit_for_gemv(w.view, bytes.data_ptr(), nullptr));
    view = w.view;
    view.packed = bytes.data_ptr<uint8_t>();
    view.layout = cuda::FourBitLayout::gemv_tiles;
  }
  at::Tensor bytes;
  cuda::FourBitWeight view;
};

// tile_4bit_for_gemv writes the layout that torch's reshapes give, and the tensor-core GEMV of the tiled bytes is
// that of the rows layout bit for bit at every pipeline depth (the same MMAs on the same bytes; only where they are
// read from differs), reading each tiled byte once; rows not a multiple of the 16-row tile, several rounds of
// chunks, more tiles than blocks; columns of whole steps of 4 chunks (1024, 2304) and not (64, 128, 4160), and of
// whole steps with a last round that only some warps have (2304 columns: 36 chunks over 8 warps' 32 a round).
TEST_F(EmulatedKernels, GemvOfTheTilesLayoutEqualsTheRowsLayout) {
  at::manual_seed(15);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (bool dq : {false, true})
      for (int64_t blocksize : {64, 256})
        for (Shape s : std::vector<Shape>{{1, 64}, {37, 128}, {130, 1024}, {50, 4160}, {70, 2304}}) {
          HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, blocksize, dq));
          const TiledWeight tiled(w);
          EXPECT_TRUE(at::equal(tiled.bytes, gemv_tiles_of(w.q))) << describe(dq, blocksize, s, at::kHalf);
          for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
            for (int64_t m : {1, 3, 8}) {
              SCOPED_TRACE(describe(o) + ", " + describe(dq, blocksize, s, dtype) + " m " + std::to_string(m));
              const at::Tensor x = at::randn({m, s.cols}).to(dtype);
              const at::Tensor expected = gemv(w, x, cuda::GemvKernel::tensor_cores);
              for (int depth = 1; depth <= cuda::kMaxGemvDepth; ++depth) {
                cuda::set_gemv_pipeline_depth(depth);
                auto tiled_gemv = [&] { return gemv(tiled.view, w, x, cuda::GemvKernel::automatic); };
                EXPECT_TRUE(at::equal(tiled_gemv(), expected)) << depth;
                if (m == 1 && dtype == at::kHalf)
                  EXPECT_EQ(reads_during(tiled.view.packed, tiled.bytes.numel(), tiled_gemv), kReadOnce) << depth;
              }
              cuda::set_gemv_pipeline_depth(0);
            }
        }
  }
}

// Tiled weights of one x share a launch as the rows layout's do (generation on a GPU by default): one launch, each y
// bit for bit its rows layout's tensor-core GEMV with the blocks' warps fixed, each tiled byte read once; rows not
// multiples of the 16-row tile, blocks walking tiles of different weights.
TEST_F(EmulatedKernels, TensorCoreGemvOfATiledGroupEqualsTheRowsLayout) {
  at::manual_seed(18);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (bool dq : {false, true})
      for (int64_t cols : {448, 1024}) {
        std::vector<HostWeight> weights, tiled_hosts;
        std::vector<TiledWeight> tiled;
        for (int64_t rows : {72, 20, 37})
          weights.emplace_back(quantize_4bit(at::randn({rows, cols}), QuantType::nf4, 64, dq));
        for (const HostWeight& w : weights) tiled.emplace_back(w);
        for (size_t i = 0; i < weights.size(); ++i) {
          tiled_hosts.push_back(weights[i]);
          tiled_hosts.back().view = tiled[i].view;
        }
        for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
          for (int64_t m : {1, 8})
            for (int count : {3, 2}) {
              SCOPED_TRACE(describe(o) + ", " + describe(dq, 64, Shape{72, cols}, dtype) + " m " + std::to_string(m) +
                           ", " + std::to_string(count) + " weights");
              const at::Tensor x = at::randn({m, cols}).to(dtype);
              std::vector<const HostWeight*> group;
              for (int i = 0; i < count; ++i) group.push_back(&tiled_hosts[i]);
              cuda::set_gemv_block_warps(8);
              const int64_t launches = simt::launches();
              const std::vector<at::Tensor> ys = gemv_group(group, x);
              EXPECT_EQ(simt::launches() - launches, 1) << "one launch for the group";
              if (m == 1 && dtype == at::kHalf && count == 3)
                EXPECT_EQ(reads_during(tiled[1].view.packed, tiled[1].bytes.numel(), [&] { gemv_group(group, x); }),
                          kReadOnce)
                    << "the second weight's bytes";
              for (int i = 0; i < count; ++i)
                EXPECT_TRUE(at::equal(ys[i], gemv(weights[i], x, cuda::GemvKernel::tensor_cores))) << "weight " << i;
              cuda::set_gemv_block_warps(0);
            }
      }
  }
}

// The dequantization of a tiled weight (what a prompt's matmul in generation takes unless AUTOTRAIN_GEMV_TILES=0)
// writes the rows layout's values bit for bit: whole weights, slices of rows starting inside a tile, blocks of
// 8-aligned columns that start and end inside a 64-column chunk; rows not a multiple of the 16-row tile.
TEST_F(EmulatedKernels, DequantizeOfTheTilesLayoutEqualsTheRowsLayout) {
  at::manual_seed(17);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (bool dq : {false, true})
      for (Shape s : std::vector<Shape>{{1, 64}, {37, 128}, {130, 1024}, {50, 4160}}) {
        HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, dq));
        const TiledWeight tiled(w);
        HostWeight tiled_host = w;
        tiled_host.view = tiled.view;
        for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
          SCOPED_TRACE(describe(o) + ", " + describe(dq, 64, s, dtype));
          const at::Tensor expected = dequantize_4bit(w.q, dtype).view({s.rows, s.cols});
          EXPECT_TRUE(at::equal(dequantize(tiled_host, 0, s.rows, 0, s.cols, dtype), expected));
          const int64_t first = s.rows / 3, last = s.rows - s.rows / 4;
          const int64_t a = 8 * (s.cols / 40), b = s.cols - 8 * (s.cols / 24);
          EXPECT_TRUE(at::equal(dequantize(tiled_host, first, last, 0, s.cols, dtype), expected.slice(0, first, last)));
          EXPECT_TRUE(at::equal(dequantize(tiled_host, first, last, a, b, dtype),
                                expected.slice(0, first, last).slice(1, a, b)));
        }
      }
  }
}

// The tiles layout where it cannot go: the CUDA-core GEMV, the tensor-core one at fp32 and the fused matmul refuse it
// (no kernel but the tensor-core GEMV and the dequantization reads it), the dequantization refuses columns not a
// multiple of 8 of it, and tile_4bit_for_gemv refuses columns not a multiple of 64; a group of a tiled and a rows
// weight goes one by one (and each gives its own GEMV's sums).
TEST_F(EmulatedKernels, TilesLayoutIsRefusedWhereItCannotGo) {
  at::manual_seed(16);
  HostWeight w(quantize_4bit(at::randn({40, 256}), QuantType::nf4, 64, true));
  const TiledWeight tiled(w);
  const at::Tensor x = at::randn({2, 256}).to(at::kBFloat16);
  at::Tensor y = output(2, 40, at::kBFloat16);
  const auto bf16 = cuda::DType::bf16;
  EXPECT_NE(cuda::gemv_4bit(tiled.view, &w.map, x.data_ptr(), 2, y.data_ptr(), bf16, nullptr,
                            cuda::GemvKernel::cuda_cores),
            nullptr);
  const at::Tensor x32 = x.to(at::kFloat);
  at::Tensor y32 = output(2, 40, at::kFloat);
  EXPECT_NE(cuda::gemv_4bit(tiled.view, &w.map, x32.data_ptr(), 2, y32.data_ptr(), cuda::DType::f32, nullptr), nullptr);
  at::Tensor dense = output(40, 256, at::kBFloat16);
  EXPECT_STREQ(cuda::dequantize_4bit(tiled.view, &w.map, 0, 40, 4, 256, dense.data_ptr(), bf16, nullptr),
               "dequantize_4bit: a weight in the gemv_tiles layout takes columns in multiples of 8");
  EXPECT_NE(cuda::dequantize_4bit(tiled.view, &w.map, 0, 40, 0, 252, dense.data_ptr(), bf16, nullptr), nullptr);
  at::Tensor c = output(2, 40, at::kBFloat16);
  EXPECT_NE(cuda::matmul_4bit(tiled.view, &w.map, x.data_ptr(), 2, c.data_ptr(), bf16, cuda::MatmulPass::forward,
                              nullptr),
            nullptr);
  HostWeight odd(quantize_4bit(at::randn({40, 96}), QuantType::nf4, 64, true));
  at::Tensor out = at::empty({cuda::gemv_tiles_bytes(40, 96)}, at::kByte);
  EXPECT_STREQ(cuda::tile_4bit_for_gemv(odd.view, out.data_ptr(), nullptr),
               "tile_4bit_for_gemv: cols must be a multiple of 64");
  HostWeight k(quantize_4bit(at::randn({24, 256}), QuantType::nf4, 64, true));
  const cuda::FourBitWeight views[2] = {tiled.view, k.view};
  at::Tensor y0 = output(2, 40, at::kBFloat16), y1 = output(2, 24, at::kBFloat16);
  void* ys[2] = {y0.data_ptr(), y1.data_ptr()};
  const int64_t launches = simt::launches();
  expect_ok(cuda::gemv_4bit_group(views, 2, &w.map, x.data_ptr(), 2, ys, bf16, nullptr));
  EXPECT_EQ(simt::launches() - launches, 2);
  EXPECT_TRUE(at::equal(y0, gemv(w, x, cuda::GemvKernel::tensor_cores)));
  EXPECT_TRUE(at::equal(y1, gemv(k, x, cuda::GemvKernel::tensor_cores)));
}

// The largest shapes of the GPU tests (tests/cuda_test.cpp): a weight larger than one pass of the grid-stride
// dequantization (bit for bit, whole and a block of columns), rows of 14336 columns for the CUDA-core GEMV, 1000
// and 138 tiles of 16 rows for the tensor-core GEMV, and a 1032 x 544 weight with 300 rows of x for the fused
// matmul's automatic tile.
TEST_F(EmulatedKernels, LargeShapesOfTheGpuTests) {
  at::manual_seed(11);
  for (bool dq : {false, true}) {
    SCOPED_TRACE(dq ? "double quantized" : "absmax");
    HostWeight big(quantize_4bit(at::randn({2200, 4160}), QuantType::nf4, 64, dq));
    at::Tensor expected = dequantize_4bit(big.q, at::kBFloat16);
    EXPECT_TRUE(at::equal(dequantize(big, 0, 2200, 0, 4160, at::kBFloat16), expected));
    EXPECT_TRUE(at::equal(dequantize(big, 0, 2200, 64, 4096, at::kBFloat16), expected.slice(1, 64, 4096)));
    at::Tensor x = at::randn({3, 4160}).to(at::kBFloat16);
    check_tensor_core_gemv(big, x);
  }
  HostWeight wide(quantize_4bit(at::randn({24, 14336}), QuantType::nf4, 64, true));
  at::Tensor x = at::randn({3, 14336}).to(at::kHalf);
  expect_close_to_fp64(gemv(wide, x, cuda::GemvKernel::cuda_cores), x, scaled_code_weight(wide.q, at::kFloat).t(),
                       at::kHalf);
  HostWeight tall(quantize_4bit(at::randn({16000, 64}), QuantType::nf4, 64, true));
  at::Tensor x8 = at::randn({8, 64}).to(at::kHalf);
  check_tensor_core_gemv(tall, x8);
  HostWeight w(quantize_4bit(at::randn({1032, 544}), QuantType::nf4, 64, true));
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    at::Tensor weight = dequantize_4bit(w.q, dtype);
    at::Tensor a = at::randn({300, 544}).to(dtype), dy = at::randn({300, 1032}).to(dtype);
    expect_close_to_fp64(matmul(w, a, cuda::MatmulPass::forward, cuda::MatmulTile::automatic), a, weight.t(), dtype);
    expect_close_to_fp64(matmul(w, dy, cuda::MatmulPass::backward, cuda::MatmulTile::automatic), dy, weight, dtype);
  }
}

// Deliverable 3's "each packed byte read once": both GEMV kernels read each byte of the packed weight exactly
// once (through __ldg; shapes without a partial last tile, whose rows past the end repeat the last row), for one
// row of x and for eight.
TEST_F(EmulatedKernels, GemvReadsEachPackedByteOnce) {
  at::manual_seed(12);
  for (Shape s : std::vector<Shape>{{144, 1024}, {64, 4160}})
    for (cuda::GemvKernel kernel : {cuda::GemvKernel::cuda_cores, cuda::GemvKernel::tensor_cores})
      for (int depth = 1; depth <= (kernel == cuda::GemvKernel::tensor_cores ? cuda::kMaxGemvDepth : 1); ++depth)
        for (int64_t m : {1, 8}) {
          SCOPED_TRACE(describe(true, 64, s, at::kBFloat16) + " m " + std::to_string(m) +
                       (kernel == cuda::GemvKernel::cuda_cores ? " CUDA cores"
                                                               : " tensor cores, depth " + std::to_string(depth)));
          HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, true));
          at::Tensor x = at::randn({m, s.cols}).to(at::kBFloat16);
          cuda::set_gemv_pipeline_depth(depth);
          EXPECT_EQ(reads_during(w.view.packed, w.q.packed.numel(), [&] { gemv(w, x, kernel); }), kReadOnce)
              << "fewest and most reads of a byte";
          cuda::set_gemv_pipeline_depth(0);
        }
}

// The fused matmul of training shapes, forward (x . W^T) and backward (dy . W), with the tile it picks: weights of
// 8 to 264 rows and 32 to 544 columns (partial tiles of C and, backward, a partial last k tile), 1 to 130 rows of
// x, blocksizes from 32 to larger than a k tile, with and without double quantization. Its weight values are
// dequantize_4bit's, so the reference is the fp64 product of those.
TEST_F(EmulatedKernels, FusedMatmulMatchesTheCpuReference) {
  at::manual_seed(7);
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (bool dq : {false, true})
      for (int64_t blocksize : {32, 64, 256})
        for (Shape s : std::vector<Shape>{{8, 32}, {136, 96}, {264, 160}, {40, 544}})
          for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
            for (int64_t m : {1, 130}) {
              SCOPED_TRACE(describe(o) + ", " + describe(dq, blocksize, s, dtype) + " m " + std::to_string(m));
              HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, blocksize, dq));
              at::Tensor weight = dequantize_4bit(w.q, dtype);
              at::Tensor x = at::randn({m, s.cols}).to(dtype), dy = at::randn({m, s.rows}).to(dtype);
              expect_close_to_fp64(matmul(w, x, cuda::MatmulPass::forward, cuda::MatmulTile::automatic), x,
                                   weight.t(), dtype);
              expect_close_to_fp64(matmul(w, dy, cuda::MatmulPass::backward, cuda::MatmulTile::automatic), dy, weight,
                                   dtype);
            }
  }
}

// Every tiling (256 x 128 with 3 stages, the others with 4) on shapes with partial tiles in both directions and,
// backward, a partial last k tile; FP4 as well as NF4. Its ldmatrix reads, forward and backward (.trans), are
// free of bank conflicts: the 16 bytes of padding per shared row put the 8 rows of each 8 x 8 matrix on distinct
// banks (without the padding, forward rows of 64 bytes would put rows r and r + 2 on the same banks).
TEST_F(EmulatedKernels, FusedMatmulEveryTileMatchesTheCpuReference) {
  at::manual_seed(10);
  simt::reset_ldmatrix_traffic();
  const std::vector<std::pair<cuda::MatmulTile, const char*>> tiles{{cuda::MatmulTile::m256n128, "256x128"},
                                                                    {cuda::MatmulTile::m128n256, "128x256"},
                                                                    {cuda::MatmulTile::m128n128, "128x128"},
                                                                    {cuda::MatmulTile::m64n128, "64x128"},
                                                                    {cuda::MatmulTile::m64n64, "64x64"}};
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (QuantType type : {QuantType::nf4, QuantType::fp4})
      for (Shape s : std::vector<Shape>{{72, 192}, {264, 160}})
        for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
          const int64_t m = 70;
          HostWeight w(quantize_4bit(at::randn({s.rows, s.cols}), type, 64, true));
          at::Tensor weight = dequantize_4bit(w.q, dtype);
          at::Tensor x = at::randn({m, s.cols}).to(dtype), dy = at::randn({m, s.rows}).to(dtype);
          for (const auto& [tile, name] : tiles) {
            SCOPED_TRACE(describe(o) + ", " + (type == QuantType::nf4 ? "nf4 " : "fp4 ") +
                         describe(true, 64, s, dtype) + " tile " + name);
            expect_close_to_fp64(matmul(w, x, cuda::MatmulPass::forward, tile), x, weight.t(), dtype);
            expect_close_to_fp64(matmul(w, dy, cuda::MatmulPass::backward, tile), dy, weight, dtype);
          }
        }
  }
  const simt::LdmatrixTraffic traffic = simt::ldmatrix_traffic();
  EXPECT_GT(traffic.matrices, 0);
  EXPECT_EQ(traffic.extra_wavefronts, 0) << "of " << traffic.matrices << " 8 x 8 matrices read by ldmatrix";
}

const std::vector<std::pair<cuda::MatmulTile, const char*>> kWgmmaTilings{
    {cuda::MatmulTile::m128n128_wgmma, "128 x 128"},
    {cuda::MatmulTile::m128n64_wgmma, "128 x 64"},
    {cuda::MatmulTile::m128n128_split_k_wgmma, "128 x 128, k split"}};

// The Hopper tilings (128 x 128, 128 x 64, and 128 x 128 with two slices of the block taking alternate k tiles:
// warpgroup MMAs on K-major operands with the 128-byte swizzle, which the emulator reads as simt.h describes)
// against the fp64 product: forward and backward, NF4 and FP4, blocksizes
// 32 and 256 (smaller than a k tile of 64, and larger), with and without double quantization; partial tiles of C in
// both directions (70 rows of x: the second warpgroup's rows do not exist; 130: a third tile of rows with 2 of
// them), a partial last k tile forward (160 columns: 2.5 k tiles, the half tile's packed chunks and pieces
// zero-filled) and backward (264 rows: 4 k tiles and 8 rows; 72 rows), and 264 outputs forward (3 or 5 tiles of
// columns, the last with 8). Rows of 160 columns with blocks of 64 and 256 values: blocks that run from one row into
// the next, whose scales the kernel finds per 32 columns. Split k meets odd and even counts of k tiles (3 and 4
// forward; 5, 2, 3 and 1 backward, where the second slice has no tile at all and adds zeros).
TEST_F(EmulatedKernels, WgmmaMatmulMatchesTheCpuReference) {
  at::manual_seed(14);
  struct Case {
    QuantType type;
    bool dq;
    int64_t blocksize;
    Shape shape;
    int64_t m;
  };
  const std::vector<Case> cases{{QuantType::nf4, true, 64, {264, 160}, 70},
                                {QuantType::fp4, false, 32, {72, 192}, 130},
                                {QuantType::nf4, false, 256, {136, 256}, 130},
                                {QuantType::nf4, true, 256, {40, 160}, 130}};
  for (const simt::Options& o : kSettings) {
    simt::set_options(o);
    for (const Case& k : cases)
      for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
        SCOPED_TRACE(describe(o) + ", " + (k.type == QuantType::nf4 ? "nf4 " : "fp4 ") +
                     describe(k.dq, k.blocksize, k.shape, dtype) + " m " + std::to_string(k.m));
        HostWeight w(quantize_4bit(at::randn({k.shape.rows, k.shape.cols}), k.type, k.blocksize, k.dq));
        at::Tensor weight = dequantize_4bit(w.q, dtype);
        at::Tensor x = at::randn({k.m, k.shape.cols}).to(dtype), dy = at::randn({k.m, k.shape.rows}).to(dtype);
        for (const auto& [tile, name] : kWgmmaTilings) {
          SCOPED_TRACE(name);
          expect_close_to_fp64(matmul(w, x, cuda::MatmulPass::forward, tile), x, weight.t(), dtype);
          expect_close_to_fp64(matmul(w, dy, cuda::MatmulPass::backward, tile), dy, weight, dtype);
        }
      }
  }
}

// The Hopper tilings read the packed weight once per tile of 128 rows of x (3 tiles for 300 rows), forward and
// backward: each block copies each packed chunk of its columns once per k tile (with k split, one of its slices does).
TEST_F(EmulatedKernels, WgmmaMatmulReadsTheWeightOncePerTileOfRows) {
  at::manual_seed(15);
  HostWeight w(quantize_4bit(at::randn({264, 160}), QuantType::nf4, 64, true));
  at::Tensor x = at::randn({300, 160}).to(at::kBFloat16), dy = at::randn({300, 264}).to(at::kBFloat16);
  for (const auto& [tile, name] : kWgmmaTilings)
    for (cuda::MatmulPass pass : {cuda::MatmulPass::forward, cuda::MatmulPass::backward}) {
      SCOPED_TRACE(std::string(name) + ", " + (pass == cuda::MatmulPass::forward ? "forward" : "backward"));
      EXPECT_EQ(reads_during(w.view.packed, w.q.packed.numel(),
                             [&] { matmul(w, pass == cuda::MatmulPass::forward ? x : dy, pass, tile); }),
                std::make_pair(int64_t(3), int64_t(3)))
          << "fewest and most reads of a byte";
    }
}

// automatic_wgmma takes 128 x 128 where that gives every SM two blocks, split k where it gives at most one, else
// 128 x 64: with the emulator's 4 SMs and 264 outputs forward (3 tiles of 128 columns), 300 rows of x make 9
// blocks, 130 rows 6 and 70 rows 3. matmul_4bit_wgmma_tile names the one it takes, automatic_wgmma launches that
// tiling's grid and block (128 x 64: 5 tiles of columns; split k: 512 threads and 185 KiB of shared memory), and
// its result is that tiling's bit for bit. Backward (160 outputs: 2 tiles), 300 rows make 6 blocks.
TEST_F(EmulatedKernels, WgmmaAutomaticTakesTheTilingItNames) {
  at::manual_seed(16);
  simt::set_options(simt::Options{});
  ASSERT_EQ(simt::options().multiprocessors, 4);
  HostWeight w(quantize_4bit(at::randn({264, 160}), QuantType::nf4, 64, true));
  const std::vector<std::tuple<int64_t, cuda::MatmulPass, cuda::MatmulTile>> cases{
      {300, cuda::MatmulPass::forward, cuda::MatmulTile::m128n128_wgmma},
      {130, cuda::MatmulPass::forward, cuda::MatmulTile::m128n64_wgmma},
      {70, cuda::MatmulPass::forward, cuda::MatmulTile::m128n128_split_k_wgmma},
      {300, cuda::MatmulPass::backward, cuda::MatmulTile::m128n64_wgmma}};
  for (const auto& [m, pass, expected] : cases) {
    const bool forward = pass == cuda::MatmulPass::forward;
    SCOPED_TRACE(std::to_string(m) + " rows, " + (forward ? "forward" : "backward"));
    EXPECT_EQ(cuda::matmul_4bit_wgmma_tile(w.view, m, pass), expected);
    const at::Tensor a = at::randn({m, forward ? 160 : 264}).to(at::kBFloat16);
    const at::Tensor automatic = matmul(w, a, pass, cuda::MatmulTile::automatic_wgmma);
    const simt::Launch launch = simt::last_launch();
    const bool narrow = expected == cuda::MatmulTile::m128n64_wgmma;
    const bool split = expected == cuda::MatmulTile::m128n128_split_k_wgmma;
    EXPECT_EQ(launch.grid_x, ((forward ? 264 : 160) + (narrow ? 63 : 127)) / (narrow ? 64 : 128));
    EXPECT_EQ(launch.grid_y, static_cast<unsigned>((m + 127) / 128));
    EXPECT_EQ(launch.threads, split ? 512u : 256u);
    EXPECT_EQ(launch.dynamic_shared_bytes, size_t(1024) + (split ? 2 : 1) * (narrow ? 70 : 92) * size_t(1024));
    EXPECT_TRUE(at::equal(automatic, matmul(w, a, pass, expected)));
  }
}

// The fused matmul reads the packed weight once per tile of rows of x (or dy): each block copies its columns of
// the weight for its rows of C, and parts of tiles past the weight's edge are zero-filled without a read. 300 rows
// of x take 3 tiles of 128 rows, 2 of 256, 5 of 64.
TEST_F(EmulatedKernels, FusedMatmulReadsTheWeightOncePerTileOfRows) {
  at::manual_seed(13);
  HostWeight w(quantize_4bit(at::randn({264, 160}), QuantType::nf4, 64, true));
  const int64_t m = 300;
  at::Tensor x = at::randn({m, 160}).to(at::kBFloat16), dy = at::randn({m, 264}).to(at::kBFloat16);
  const std::vector<std::pair<cuda::MatmulTile, int64_t>> tiles{
      {cuda::MatmulTile::m256n128, 2}, {cuda::MatmulTile::m128n128, 3}, {cuda::MatmulTile::m64n64, 5}};
  for (const auto& [tile, row_tiles] : tiles)
    for (cuda::MatmulPass pass : {cuda::MatmulPass::forward, cuda::MatmulPass::backward}) {
      SCOPED_TRACE(std::to_string(row_tiles) + " tiles of rows, " +
                   (pass == cuda::MatmulPass::forward ? "forward" : "backward"));
      EXPECT_EQ(reads_during(w.view.packed, w.q.packed.numel(),
                             [&] { matmul(w, pass == cuda::MatmulPass::forward ? x : dy, pass, tile); }),
                std::make_pair(row_tiles, row_tiles))
          << "fewest and most reads of a byte";
    }
}

// The launchers' refusals hold under emulation as on a GPU: fp32, columns not a multiple of 32, a misaligned input.
TEST_F(EmulatedKernels, FusedMatmulRefusesWhatItCannotTake) {
  HostWeight w(quantize_4bit(at::randn({64, 96}), QuantType::nf4, 64, true));
  at::Tensor x = at::randn({4, 96 + 8}).to(at::kHalf), c = at::zeros({4, 64}, at::kHalf);
  const int64_t before = simt::launches();
  EXPECT_NE(cuda::matmul_4bit(w.view, &w.map, x.data_ptr(), 4, c.data_ptr(), cuda::DType::f32,
                              cuda::MatmulPass::forward, nullptr),
            nullptr);
  EXPECT_NE(cuda::matmul_4bit(w.view, &w.map, static_cast<at::Half*>(x.data_ptr()) + 1, 4, c.data_ptr(),
                              cuda::DType::f16, cuda::MatmulPass::forward, nullptr),
            nullptr);
  HostWeight narrow(quantize_4bit(at::randn({64, 80}), QuantType::nf4, 64, true));
  EXPECT_NE(cuda::matmul_4bit(narrow.view, &narrow.map, x.data_ptr(), 4, c.data_ptr(), cuda::DType::f16,
                              cuda::MatmulPass::forward, nullptr),
            nullptr);
  EXPECT_EQ(simt::launches(), before);
}

}  // namespace
}  // namespace autotrain
