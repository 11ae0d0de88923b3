// GPU tests: they run where the build has CUDA kernels and the machine a device, and skip otherwise.
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "autotrain/cuda_backend.h"
#include "autotrain/cuda_kernels.h"
#include "autotrain/cuda_ops.h"
#include "autotrain/device.h"
#include "autotrain/error.h"
#include "autotrain/finetune.h"
#include "autotrain/frozen_linear.h"
#include "autotrain/generation.h"
#include "autotrain/lora.h"
#include "autotrain/metrics.h"
#include "autotrain/model.h"
#include "autotrain/quant.h"
#include "autotrain/safetensors.h"
#include "kernel_reference.h"
#include "test_util.h"

namespace autotrain {
namespace {

bool is_loaded(const char* library) { return ::dlopen(library, RTLD_NOW | RTLD_NOLOAD) != nullptr; }

using testing::expect_close_to_fp64;
using testing::load_cuda_backend;
using testing::scaled_code_weight;

// libtorch_cuda is not linked (it costs every process ~370 MB at start-up); it is loaded when asked for.
TEST(CudaBackend, LoadsOnlyWhenAskedFor) {
  EXPECT_FALSE(is_loaded("libtorch_cuda.so")) << "linked at start-up: autotrain should link torch_cpu and c10 only";
  if (!load_cuda_backend()) GTEST_SKIP() << "torch settled on CPU only in an earlier test; run this test alone";
  EXPECT_TRUE(is_loaded("libtorch_cuda.so"));
  EXPECT_NO_THROW(ensure_cuda_backend());  // a second call is free
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::Tensor x = at::arange(6, at::kFloat);
  EXPECT_TRUE(at::equal((x.to(at::kCUDA) * 2).cpu(), x * 2));
}

TEST(CudaKernels, SelfTestRunsOnTheDevice) {
#ifndef AUTOTRAIN_WITH_CUDA
  GTEST_SKIP() << "built without CUDA kernels";
#else
  EXPECT_FALSE(cuda::compiled_architectures().empty());
  if (!load_cuda_backend()) GTEST_SKIP() << "torch settled on CPU only in an earlier test; run this test alone";
  if (!torch::cuda::is_available() || torch::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  EXPECT_EQ(cuda::self_test(), "");
#endif
}

// ---- the 4-bit kernels against their CPU reference (src/quant.cpp) ---------------------------------------

Quantized4bit on_gpu(const Quantized4bit& q) { return q.to(at::kCUDA); }

struct Shape {
  int64_t rows, cols;
};
// Odd shapes (odd element counts, rows that start mid-byte, columns not a multiple of 8 or 32), a partial
// last block, and aligned shapes that take the vectorised paths.
const std::vector<Shape> kShapes{{1, 1}, {3, 7}, {37, 53}, {129, 200}, {5, 96}, {64, 256}, {130, 1024}};
const std::vector<at::ScalarType> kDtypes{at::kFloat, at::kHalf, at::kBFloat16};

std::string describe(QuantType type, bool dq, int64_t blocksize, Shape s, at::ScalarType dtype) {
  return std::string(type == QuantType::nf4 ? "nf4" : "fp4") + (dq ? " double-quantized" : "") + " blocksize " +
         std::to_string(blocksize) + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) + " " +
         c10::toString(dtype);
}

// Bit for bit: the kernel rounds each value exactly as the CPU does (see kernels/four_bit.cu).
TEST(CudaKernels, DequantizeEqualsTheCpuBitForBit) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(1);
  for (QuantType type : {QuantType::nf4, QuantType::fp4})
    for (bool dq : {false, true})
      for (int64_t blocksize : {64, 256})
        for (Shape s : kShapes) {
          Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), type, blocksize, dq);
          Quantized4bit g = on_gpu(q);
          for (at::ScalarType dtype : kDtypes) {
            SCOPED_TRACE(describe(type, dq, blocksize, s, dtype));
            at::Tensor expected = dequantize_4bit(q, dtype);
            EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, dtype).cpu(), expected));
            const int64_t first = s.rows / 3, last = s.rows - s.rows / 4;  // a slice of rows
            EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, dtype, first, last).cpu(), expected.slice(0, first, last)));
            // blocks of columns: 8-aligned (the vectorised path when the rows are too) and not
            const int64_t a = 8 * (s.cols / 40), b = s.cols - 8 * (s.cols / 40), c = s.cols / 3, d = s.cols - s.cols / 4;
            EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, dtype, first, last, a, b).cpu(),
                                  expected.slice(0, first, last).slice(1, a, b)));
            EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, dtype, 0, -1, c, d).cpu(), expected.slice(1, c, d)));
          }
        }
}

// A weight larger than one pass of the grid-stride kernels (a few SMs x 8 blocks x 256 threads x 4 groups of 8
// values each: ~8.7 M values on a 132-SM GPU), so that threads take several strides, whole rows and a block of
// columns; bit for bit as above.
TEST(CudaKernels, DequantizeOfALargeWeightEqualsTheCpuBitForBit) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(11);
  for (bool dq : {false, true}) {
    Quantized4bit q = quantize_4bit(at::randn({2200, 4160}), QuantType::nf4, 64, dq);
    Quantized4bit g = on_gpu(q);
    at::Tensor expected = dequantize_4bit(q, at::kBFloat16);
    EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, at::kBFloat16).cpu(), expected)) << "double quantized " << dq;
    EXPECT_TRUE(at::equal(dequantize_4bit_cuda(g, at::kBFloat16, 0, -1, 64, 4096).cpu(), expected.slice(1, 64, 4096)))
        << "double quantized " << dq;
  }
}

#ifdef AUTOTRAIN_WITH_CUDA  // the knob lives in the kernels' library
// Launched overlapping the kernel before it (set_dequantize_overlap), the dequantization may start while that
// kernel runs and must wait for it before it writes: back-to-back sliced matmuls, each dequantizing into the slice
// memory the matmul before it still reads (weights of one shape: the caching allocator hands the freed slice
// straight back), give the same products bit for bit as launched one at a time; so does the dequantization alone,
// whole and by columns.
TEST(CudaKernels, DequantizeLaunchedOverlappingWaitsBeforeItWrites) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(12);
  std::vector<Quantized4bit> weights;
  for (int i = 0; i < 4; ++i)
    weights.push_back(on_gpu(quantize_4bit(at::randn({2048, 2048}), QuantType::nf4, 64, i % 2 == 0)));
  const at::Tensor x = at::randn({2048, 2048}).to(at::kBFloat16).to(at::kCUDA);
  auto products = [&] {
    std::vector<at::Tensor> out;
    for (int run = 0; run < 2; ++run)
      for (const Quantized4bit& w : weights) out.push_back(matmul_4bit_cuda(x, w, dequantize_chunk_bytes()));
    out.push_back(dequantize_4bit_cuda(weights[1], at::kHalf));
    out.push_back(dequantize_4bit_cuda(weights[2], at::kBFloat16, 100, 900, 64, 1984));
    return out;
  };
  const std::vector<at::Tensor> expected = products();
  cuda::set_dequantize_overlap(true);
  const std::vector<at::Tensor> overlapped = products();
  cuda::set_dequantize_overlap(false);
  ASSERT_EQ(overlapped.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_TRUE(at::equal(overlapped[i], expected[i])) << "product " << i;
}
#endif

// The torch-ops quantization on the GPU (what a model bound for a GPU quantizes with) gives the CPU loop's
// bytes: each of its steps is an exact IEEE operation on either device.
TEST(CudaKernels, QuantizeOnTheGpuEqualsTheCpuBitForBit) {
  REQUIRE_CUDA_DEVICE();
  testing::expect_torch_quantization_equals_the_loop(at::Device(at::kCUDA, 0));
}

// The CUDA-core GEMV multiplies code * scale unrounded (fp32 codes, each group's sum times its block's scale).
// Beyond the shapes above, rows wider than one round of its loop (4 chunks of 1024 columns): 4160 and 14336.
TEST(CudaKernels, GemvMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(2);
  std::vector<Shape> shapes = kShapes;
  shapes.insert(shapes.end(), {{40, 4160}, {24, 14336}});
  for (bool dq : {false, true})
    for (Shape s : shapes)
      for (at::ScalarType dtype : kDtypes)
        for (int64_t m : {1, 3, 8}) {
          SCOPED_TRACE(describe(QuantType::nf4, dq, 64, s, dtype) + " m " + std::to_string(m));
          Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, dq);
          at::Tensor x = at::randn({m, s.cols}).to(dtype);
          at::Tensor y = gemv_4bit_cuda(x.to(at::kCUDA), on_gpu(q), cuda::GemvKernel::cuda_cores);
          ASSERT_EQ(y.sizes(), (std::vector<int64_t>{m, s.rows}));
          expect_close_to_fp64(y, x, scaled_code_weight(q, at::kFloat).t(), dtype);
        }
}

// Shapes the tensor-core kernel takes (cols a multiple of 64): row counts that are not multiples of its 16-row
// tile, and column counts of 1 to 224 chunks of 64 (fewer chunks than a block has warps, and uneven shares);
// 16000 x 64 (1000 tiles of 16 rows, blocks of 4 warps) and 2200 x 4160 (138 tiles, blocks of 8 or 16 warps) have
// more tiles than the grid, one wave of blocks, on GPUs of up to 132 SMs: blocks take several tiles; 2200 x 4160
// also takes two or more rounds of chunks per tile. Every pipeline depth, and a launch one at a time instead of
// overlapping the kernel before it, give the default's sums bit for bit; blocks of at most 8 and of at most 16 warps
// are within the same bound.
TEST(CudaKernels, TensorCoreGemvMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(5);
  const std::vector<Shape> shapes{{1, 64},     {37, 128},  {130, 1024}, {16, 448},
                                  {300, 4096}, {24, 14336}, {16000, 64}, {2200, 4160}};
  for (bool dq : {false, true})
    for (int64_t blocksize : {64, 256})
      for (Shape s : shapes)
        for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
          for (int64_t m : {1, 3, 8}) {
            SCOPED_TRACE(describe(QuantType::nf4, dq, blocksize, s, dtype) + " m " + std::to_string(m));
            Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, blocksize, dq);
            at::Tensor x = at::randn({m, s.cols}).to(dtype);
            const Quantized4bit weight = on_gpu(q);
            at::Tensor y = gemv_4bit_cuda(x.to(at::kCUDA), weight, cuda::GemvKernel::tensor_cores);
            ASSERT_EQ(y.sizes(), (std::vector<int64_t>{m, s.rows}));
            expect_close_to_fp64(y, x, scaled_code_weight(q, dtype).t(), dtype);
#ifdef AUTOTRAIN_WITH_CUDA  // the tuning knobs live in the kernels' library
            for (int depth = 1; depth <= cuda::kMaxGemvDepth; ++depth) {  // the same sums at every depth
              if (depth == cuda::kDefaultGemvDepth) continue;
              cuda::set_gemv_pipeline_depth(depth);
              at::Tensor other = gemv_4bit_cuda(x.to(at::kCUDA), weight, cuda::GemvKernel::tensor_cores);
              cuda::set_gemv_pipeline_depth(0);
              EXPECT_TRUE(at::equal(other, y)) << "pipeline depth " << depth;
            }
            cuda::set_gemv_overlap(false);  // without programmatic dependent launch (sm_90+): the same sums
            at::Tensor alone = gemv_4bit_cuda(x.to(at::kCUDA), weight, cuda::GemvKernel::tensor_cores);
            cuda::set_gemv_overlap(true);
            EXPECT_TRUE(at::equal(alone, y)) << "launched one at a time";
            for (int warps : {8, cuda::kMaxGemvBlockWarps}) {  // other blocks add in another order: the same bound
              SCOPED_TRACE("blocks of at most " + std::to_string(warps) + " warps");
              cuda::set_gemv_block_warps(warps);
              at::Tensor other = gemv_4bit_cuda(x.to(at::kCUDA), weight, cuda::GemvKernel::tensor_cores);
              cuda::set_gemv_block_warps(0);
              expect_close_to_fp64(other, x, scaled_code_weight(q, dtype).t(), dtype);
            }
#endif
          }
}

#ifdef AUTOTRAIN_WITH_CUDA  // the knob lives in the kernels' library
// Launched overlapping the kernel before it (programmatic dependent launch), a GEMV may start while that kernel
// runs, and must wait for it before it reads x: a chain of GEMVs, each one's x the one before's y, back to back on
// one stream, gives the chain's sums bit for bit (a GEMV reading x too early would read the previous call's y
// half written, or the y of the chain's run before).
TEST(CudaKernels, TensorCoreGemvLaunchedOverlappingWaitsForItsInput) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(6);
  std::vector<Quantized4bit> weights;
  for (int i = 0; i < 6; ++i)
    weights.push_back(on_gpu(quantize_4bit(at::randn({4096, 4096}) / 64, QuantType::nf4, 64, true)));  // |y| ~ |x|
  const at::Tensor x = at::randn({1, 4096}).to(at::kBFloat16).to(at::kCUDA);
  auto chain = [&] {
    at::Tensor y = x;
    for (const Quantized4bit& w : weights) y = gemv_4bit_cuda(y, w, cuda::GemvKernel::tensor_cores);
    return y;
  };
  cuda::set_gemv_overlap(false);
  const at::Tensor expected = chain();
  cuda::set_gemv_overlap(true);  // the default
  at::Tensor other;
  for (int run = 0; run < 3; ++run) other = chain();
  EXPECT_TRUE(at::equal(other, expected));
  EXPECT_GT(expected.abs().max().item<float>(), 0.0f);  // the chain did not die out to zeros
}
#endif

#ifdef AUTOTRAIN_WITH_CUDA  // the knobs live in the kernels' library
// Weights of one x in one launch (gemv_4bit_group): Llama-3-8B's q, k and v (k and v have 64 tiles of 16 rows
// each), a narrower gate and up, and odd shapes: with the blocks' warps fixed each y is that weight's tensor-core GEMV
// bit for bit; at the automatic warps, within its bound. (That the group is one launch, the emulated test counts:
// tests/simt/kernels_emulated_test.cpp.)
TEST(CudaKernels, TensorCoreGemvOfAGroupEqualsEachWeightAlone) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(7);
  const std::vector<std::vector<Shape>> groups{
      {{4096, 4096}, {1024, 4096}, {1024, 4096}}, {{2816, 1024}, {2816, 1024}}, {{72, 448}, {20, 448}, {37, 448}}};
  for (const std::vector<Shape>& shapes : groups)
    for (bool dq : {false, true}) {
      std::vector<Quantized4bit> cpu, gpu;
      for (Shape s : shapes) {
        cpu.push_back(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, dq));
        gpu.push_back(on_gpu(cpu.back()));
      }
      std::vector<const Quantized4bit*> weights;
      for (const Quantized4bit& q : gpu) weights.push_back(&q);
      for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
        for (int64_t m : {1, 8}) {
          SCOPED_TRACE(describe(QuantType::nf4, dq, 64, shapes[0], dtype) + " and " +
                       std::to_string(shapes.size() - 1) + " more, m " + std::to_string(m));
          const at::Tensor x = at::randn({m, shapes[0].cols}).to(dtype);
          const at::Tensor x_gpu = x.to(at::kCUDA);
          std::vector<at::Tensor> ys = gemv_4bit_group_cuda(x_gpu, weights);
          ASSERT_EQ(ys.size(), shapes.size());
          for (size_t i = 0; i < shapes.size(); ++i) {
            ASSERT_EQ(ys[i].sizes(), (std::vector<int64_t>{m, shapes[i].rows}));
            expect_close_to_fp64(ys[i], x, scaled_code_weight(cpu[i], dtype).t(), dtype);
          }
          cuda::set_gemv_block_warps(8);
          ys = gemv_4bit_group_cuda(x_gpu, weights);
          for (size_t i = 0; i < shapes.size(); ++i)
            EXPECT_TRUE(at::equal(ys[i], gemv_4bit_cuda(x_gpu, gpu[i], cuda::GemvKernel::tensor_cores))) << i;
          cuda::set_gemv_block_warps(0);
        }
    }
}
#endif

#ifdef AUTOTRAIN_WITH_CUDA  // the layout's launchers live in the kernels' library
// The gemv_tiles layout (an experiment, tools/bench_gpu times it): tile_4bit_for_gemv writes the bytes torch's
// reshapes give, and the tensor-core GEMV of them is that of the rows layout bit for bit, at every pipeline depth,
// launched overlapping or not, on Llama-3-8B's shapes and odd ones.
TEST(CudaKernels, GemvOfTheTilesLayoutEqualsTheRowsLayout) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(8);
  for (Shape s : std::vector<Shape>{{4096, 4096}, {1024, 4096}, {4096, 14336}, {37, 128}, {2200, 4160}})
    for (bool dq : {false, true}) {
      const Quantized4bit q = on_gpu(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, dq));
      cuda::FourBitWeight tiled = four_bit_kernel_view(q);
      at::Tensor bytes = at::empty({cuda::gemv_tiles_bytes(s.rows, s.cols)}, q.packed.options());
      ASSERT_EQ(cuda::tile_4bit_for_gemv(tiled, bytes.data_ptr(), nullptr), nullptr);
      EXPECT_TRUE(at::equal(bytes.cpu(), testing::gemv_tiles_of(q)));
      tiled.packed = bytes.data_ptr<uint8_t>();
      tiled.layout = cuda::FourBitLayout::gemv_tiles;
      for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
        for (int64_t m : {1, 8}) {
          SCOPED_TRACE(describe(QuantType::nf4, dq, 64, s, dtype) + " m " + std::to_string(m));
          const at::Tensor x = at::randn({m, s.cols}).to(dtype).to(at::kCUDA);
          const at::Tensor expected = gemv_4bit_cuda(x, q, cuda::GemvKernel::tensor_cores);
          for (int depth = 1; depth <= cuda::kMaxGemvDepth; ++depth)
            for (bool overlap : {true, false}) {
              cuda::set_gemv_pipeline_depth(depth);
              cuda::set_gemv_overlap(overlap);
              at::Tensor y = at::empty_like(expected);
              EXPECT_EQ(cuda::gemv_4bit(tiled, kernel_dynamic_map(), x.data_ptr(), m, y.data_ptr(),
                                        testing::kernel_dtype_of(dtype), nullptr),
                        nullptr);
              EXPECT_TRUE(at::equal(y, expected)) << "depth " << depth << (overlap ? ", overlapping" : "");
            }
          cuda::set_gemv_pipeline_depth(0);
          cuda::set_gemv_overlap(true);
        }
    }
}
#endif

// A weight put in the gemv_tiles layout (what generation does unless AUTOTRAIN_GEMV_TILES=0) gives the rows layout's
// results bit for bit wherever it goes: the dequantization (whole, and 8-aligned blocks of columns), the sliced matmul
// forward and backward in slices of 1 MiB (row slices forward, column slices backward: blocks of the tiled weight
// that start inside tiles and chunks), and a frozen layer's forward and input gradient for 1, 8 and 300 rows of x and
// for a misaligned x (which the tensor-core GEMV of a tiled weight cannot take as it is: it is copied). fp32 is not
// tiled, and a tiled weight with an fp32 x takes the matmul (the same values, within fp32 rounding of the sums).
TEST(CudaKernels, TilesLayoutGivesTheRowsLayoutsResults) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(10);
  const auto bf16 = at::kBFloat16;
  auto cuda_randn = [](std::vector<int64_t> shape, at::ScalarType dtype) {
    return at::randn(shape).to(dtype).to(at::kCUDA);
  };
  for (Shape s : std::vector<Shape>{{1024, 4096}, {37, 128}, {2200, 4160}})
    for (bool dq : {false, true}) {
      SCOPED_TRACE(describe(QuantType::nf4, dq, 64, s, bf16));
      const at::Tensor weight = at::randn({s.rows, s.cols}).to(at::kCUDA);
      const Quantized4bit rows = quantize_4bit_torch(weight, QuantType::nf4, 64, dq);
      Quantized4bit tiled = rows;
      EXPECT_FALSE(tile_4bit_for_gemv_cuda(tiled, at::kFloat));
      EXPECT_FALSE(tiled.gemv_tiles);
      ASSERT_TRUE(tile_4bit_for_gemv_cuda(tiled, bf16));
      ASSERT_TRUE(tiled.gemv_tiles);
      EXPECT_TRUE(at::equal(tiled.packed.cpu(), testing::gemv_tiles_of(rows.to(at::kCPU))));
      for (at::ScalarType dtype : {at::kFloat, at::kHalf, bf16}) {
        EXPECT_TRUE(at::equal(dequantize_4bit_cuda(tiled, dtype), dequantize_4bit_cuda(rows, dtype)));
        const int64_t c0 = 8 * (s.cols / 40), c1 = s.cols - 8 * (s.cols / 24), r0 = s.rows / 3;
        EXPECT_TRUE(at::equal(dequantize_4bit_cuda(tiled, dtype, r0, -1, c0, c1),
                              dequantize_4bit_cuda(rows, dtype, r0, -1, c0, c1)));
      }
      const at::Tensor x = cuda_randn({300, s.cols}, bf16), dy = cuda_randn({300, s.rows}, bf16);
      EXPECT_TRUE(at::equal(matmul_4bit_cuda(x, tiled, 1 << 20), matmul_4bit_cuda(x, rows, 1 << 20)));
      EXPECT_TRUE(
          at::equal(matmul_4bit_transposed_cuda(dy, tiled, 1 << 20), matmul_4bit_transposed_cuda(dy, rows, 1 << 20)));

      FourBitOptions four_bit;
      four_bit.double_quantize = dq;
      FrozenLinear rows_layer(weight, {}, BaseQuantization::int4, bf16, four_bit);
      FrozenLinear tiled_layer(weight, {}, BaseQuantization::int4, bf16, four_bit);
      ASSERT_TRUE(tiled_layer.tile_for_gemv(bf16));
      for (int64_t m : {1, 8, 300}) {
        const at::Tensor input = cuda_randn({m, s.cols}, bf16).requires_grad_();
        const at::Tensor y_rows = rows_layer.forward(input), y_tiled = tiled_layer.forward(input);
        EXPECT_TRUE(at::equal(y_tiled, y_rows)) << m << " rows of x";
        const at::Tensor grad = at::randn_like(y_rows);
        EXPECT_TRUE(at::equal(torch::autograd::grad({y_tiled}, {input}, {grad})[0],
                              torch::autograd::grad({y_rows}, {input}, {grad})[0]))
            << m << " rows of x";
      }
      // Misaligned, the rows layout would take the CUDA-core GEMV (other roundings): compared with its aligned copy.
      const at::Tensor misaligned = cuda_randn({1, s.cols + 1}, bf16).narrow(1, 1, s.cols);
      EXPECT_TRUE(at::equal(tiled_layer.forward(misaligned), rows_layer.forward(misaligned.clone())));
      // fp32: the matmul (fp32 values code * scale, cuBLAS) against the CUDA-core GEMV (sums of codes times a scale):
      // |y| ~ sqrt(cols) ~ 64, and sums of up to 4160 fp32 products in other orders stay well within 1e-2; a
      // misplaced byte would be off by O(1).
      const at::Tensor x32 = cuda_randn({1, s.cols}, at::kFloat);
      EXPECT_TRUE(at::allclose(tiled_layer.forward(x32), rows_layer.forward(x32), 1e-4, 1e-2));
    }
}

// `automatic` is the tensor-core kernel where it applies, for one row of x as for several, and the CUDA-core one
// elsewhere (fp32, columns not a multiple of 64); asking for the tensor-core kernel where it does not apply is an
// error, not a wrong answer.
TEST(CudaKernels, GemvPicksTheTensorCoreKernelWhereItApplies) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(6);
  struct Case {
    Shape shape;
    at::ScalarType dtype;
    bool tensor_cores;
  };
  for (Case c : std::vector<Case>{{{40, 256}, at::kBFloat16, true}, {{40, 256}, at::kHalf, true},
                                  {{40, 256}, at::kFloat, false}, {{40, 96}, at::kBFloat16, false}}) {
    SCOPED_TRACE(describe(QuantType::nf4, true, 64, c.shape, c.dtype));
    Quantized4bit q = on_gpu(quantize_4bit(at::randn({c.shape.rows, c.shape.cols}), QuantType::nf4, 64, true));
    at::Tensor x = at::randn({2, c.shape.cols}).to(c.dtype).to(at::kCUDA);
    const auto expected_kernel = c.tensor_cores ? cuda::GemvKernel::tensor_cores : cuda::GemvKernel::cuda_cores;
    EXPECT_TRUE(at::equal(gemv_4bit_cuda(x, q), gemv_4bit_cuda(x, q, expected_kernel)));
    if (!c.tensor_cores) EXPECT_THROW(gemv_4bit_cuda(x, q, cuda::GemvKernel::tensor_cores), Error);
    at::Tensor one_row = x.narrow(0, 0, 1).contiguous();
    EXPECT_TRUE(at::equal(gemv_4bit_cuda(one_row, q), gemv_4bit_cuda(one_row, q, expected_kernel)));
  }
}

// cuBLAS may add split-K partial sums in fp16 / bf16 (torch's default allow_fp16/bf16_reduced_precision_
// reduction), which rounds more than once; the bounds above assume one rounding of an fp32 sum, so the
// matmul tests ask for fp32 reductions while they run.
class FullPrecisionReductions {
 public:
  FullPrecisionReductions()
      : fp16_(at::globalContext().allowFP16ReductionCuBLAS()), bf16_(at::globalContext().allowBF16ReductionCuBLAS()) {
    at::globalContext().setAllowFP16ReductionCuBLAS(false);
    at::globalContext().setAllowBF16ReductionCuBLAS(false);
  }
  ~FullPrecisionReductions() {
    restore(fp16_, [](bool a, bool b) { at::globalContext().setAllowFP16ReductionCuBLAS(a, b); });
    restore(bf16_, [](bool a, bool b) { at::globalContext().setAllowBF16ReductionCuBLAS(a, b); });
  }

 private:
  template <typename Set>
  static void restore(at::CuBLASReductionOption option, Set set) {
    set(option == at::CuBLASReductionOption::AllowReducedPrecisionWithSplitK,
        option != at::CuBLASReductionOption::DisallowReducedPrecisionDisallowSplitK);
  }
  at::CuBLASReductionOption fp16_, bf16_;
};

// The sliced matmul with slices of 128 rows forward (a 300-row weight takes three: 128, 128, 44) and of 128
// columns backward (a 200-column weight takes two: 128, 72): every slice boundary and short last slices.
TEST(CudaKernels, SlicedMatmulMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  FullPrecisionReductions reductions;
  torch::manual_seed(3);
  for (Shape s : std::vector<Shape>{{300, 200}, {129, 96}, {37, 53}})
    for (at::ScalarType dtype : kDtypes)
      for (int64_t m : {9, 257}) {
        SCOPED_TRACE(describe(QuantType::nf4, true, 64, s, dtype) + " m " + std::to_string(m));
        Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, true);
        Quantized4bit g = on_gpu(q);
        const int64_t slice = 128 * std::max(s.rows, s.cols) * at::elementSize(dtype);
        at::Tensor w = dequantize_4bit(q, dtype);
        at::Tensor x = at::randn({m, s.cols}).to(dtype);
        expect_close_to_fp64(matmul_4bit_cuda(x.to(at::kCUDA), g, slice), x, w.t(), dtype);
        at::Tensor dy = at::randn({m, s.rows}).to(dtype);
        expect_close_to_fp64(matmul_4bit_transposed_cuda(dy.to(at::kCUDA), g, slice), dy, w, dtype);
      }
}

// The fused tensor-core matmul (kernels/four_bit_matmul.cu: tiles of C of 64 to 256, k tiles of 32; here the
// tile it picks itself) on shapes around its tiles: weights of 8 to 1032 rows (forward: output columns;
// backward: the reduction, whose last tile of 32 rows is then partial) and 32 to 544 columns (forward: the
// reduction; backward: output columns), one row of x up to three tiles of 128 with a short last one, blocksizes
// from the smallest (32) to larger than a k tile, with and without double quantization. Its weight values are
// dequantize_4bit's bit for bit, so the reference is the fp64 product of those; the bound is
// expect_close_to_fp64's (fp32 sums rounded once).
TEST(CudaKernels, FusedMatmulMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(7);
  const std::vector<Shape> shapes{{8, 32}, {136, 96}, {264, 160}, {1032, 544}};
  for (bool dq : {false, true})
    for (int64_t blocksize : {32, 64, 256})
      for (Shape s : shapes)
        for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
          for (int64_t m : {1, 130, 300}) {
            SCOPED_TRACE(describe(QuantType::nf4, dq, blocksize, s, dtype) + " m " + std::to_string(m));
            Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, blocksize, dq);
            Quantized4bit g = on_gpu(q);
            at::Tensor w = dequantize_4bit(q, dtype);
            at::Tensor x = at::randn({m, s.cols}).to(dtype), dy = at::randn({m, s.rows}).to(dtype);
            ASSERT_TRUE(matmul_4bit_fused_supports(x.to(at::kCUDA), g, cuda::MatmulPass::forward));
            at::Tensor y = matmul_4bit_fused_cuda(x.to(at::kCUDA), g, cuda::MatmulPass::forward);
            ASSERT_EQ(y.sizes(), (std::vector<int64_t>{m, s.rows}));
            expect_close_to_fp64(y, x, w.t(), dtype);
            at::Tensor dx = matmul_4bit_fused_cuda(dy.to(at::kCUDA), g, cuda::MatmulPass::backward);
            ASSERT_EQ(dx.sizes(), (std::vector<int64_t>{m, s.cols}));
            expect_close_to_fp64(dx, dy, w, dtype);
          }
}

// Each tiling of the kernel (automatic picks among them by the shape) on the same odd shapes.
TEST(CudaKernels, FusedMatmulEveryTileMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(10);
  const std::vector<std::pair<cuda::MatmulTile, const char*>> tiles{{cuda::MatmulTile::m256n128, "256x128"},
                                                                    {cuda::MatmulTile::m128n256, "128x256"},
                                                                    {cuda::MatmulTile::m128n128, "128x128"},
                                                                    {cuda::MatmulTile::m64n128, "64x128"},
                                                                    {cuda::MatmulTile::m64n64, "64x64"}};
  for (Shape s : std::vector<Shape>{{8, 32}, {136, 96}, {264, 160}, {1032, 544}})
    for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
      for (int64_t m : {1, 70, 300}) {
        Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, true);
        Quantized4bit g = on_gpu(q);
        at::Tensor w = dequantize_4bit(q, dtype);
        at::Tensor x = at::randn({m, s.cols}).to(dtype), dy = at::randn({m, s.rows}).to(dtype);
        for (const auto& [tile, name] : tiles) {
          SCOPED_TRACE(describe(QuantType::nf4, true, 64, s, dtype) + " m " + std::to_string(m) + " tile " + name);
          expect_close_to_fp64(matmul_4bit_fused_cuda(x.to(at::kCUDA), g, cuda::MatmulPass::forward, tile), x,
                               w.t(), dtype);
          expect_close_to_fp64(matmul_4bit_fused_cuda(dy.to(at::kCUDA), g, cuda::MatmulPass::backward, tile), dy, w,
                               dtype);
        }
      }
}

// The Hopper tilings (warpgroup MMAs; an sm_90 GPU and a build with sm_90a code, else skipped), 128 x 128, 128 x 64
// and the automatic choice, on the same odd shapes and a Llama k/v projection's (1024 x 4096, 2048 tokens), NF4
// double-quantized and FP4 with blocksize 32 and absmax, both dtypes. Its own test (and its own process under
// ctest): a kernel that faults on the GPU spoils the CUDA context of the tests after it.
TEST(CudaKernels, WgmmaMatmulMatchesTheCpuReference) {
  REQUIRE_CUDA_DEVICE();
  if (!cuda::matmul_4bit_wgmma_available()) GTEST_SKIP() << "not an sm_90 GPU, or no sm_90a code in this build";
  torch::manual_seed(11);
  for (Shape s : std::vector<Shape>{{8, 32}, {136, 96}, {264, 160}, {1032, 544}, {1024, 4096}})
    for (bool nf4 : {true, false})
      for (at::ScalarType dtype : {at::kHalf, at::kBFloat16})
        for (int64_t m : s.cols == 4096 ? std::vector<int64_t>{2048} : std::vector<int64_t>{1, 70, 300}) {
          const QuantType type = nf4 ? QuantType::nf4 : QuantType::fp4;
          Quantized4bit q = quantize_4bit(at::randn({s.rows, s.cols}), type, nf4 ? 64 : 32, nf4);
          Quantized4bit g = on_gpu(q);
          at::Tensor w = dequantize_4bit(q, dtype);
          at::Tensor x = at::randn({m, s.cols}).to(dtype), dy = at::randn({m, s.rows}).to(dtype);
          for (cuda::MatmulTile tile : {cuda::MatmulTile::m128n128_wgmma, cuda::MatmulTile::m128n64_wgmma,
                                        cuda::MatmulTile::m128n128_split_k_wgmma, cuda::MatmulTile::automatic_wgmma}) {
            SCOPED_TRACE(describe(type, nf4, nf4 ? 64 : 32, s, dtype) + " m " + std::to_string(m) + " tile " +
                         std::to_string(static_cast<int>(tile)));
            expect_close_to_fp64(matmul_4bit_fused_cuda(x.to(at::kCUDA), g, cuda::MatmulPass::forward, tile), x,
                                 w.t(), dtype);
            expect_close_to_fp64(matmul_4bit_fused_cuda(dy.to(at::kCUDA), g, cuda::MatmulPass::backward, tile), dy,
                                 w, dtype);
          }
        }
}

// FP4 takes the same path with another code; a 3-D input keeps its leading dimensions.
TEST(CudaKernels, FusedMatmulTakesFp4AndLeadingDimensions) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(8);
  Quantized4bit q = quantize_4bit(at::randn({72, 192}), QuantType::fp4, 64, true);
  at::Tensor w = dequantize_4bit(q, at::kBFloat16);
  at::Tensor x = at::randn({2, 70, 192}).to(at::kBFloat16);
  at::Tensor y = matmul_4bit_fused_cuda(x.to(at::kCUDA), on_gpu(q), cuda::MatmulPass::forward);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 70, 72}));
  expect_close_to_fp64(y.reshape({140, 72}), x.reshape({140, 192}), w.t(), at::kBFloat16);
}

// What the kernel does not take, it says so (training then takes the sliced matmul): fp32, columns not a
// multiple of 32, rows not a multiple of 8, an input of the wrong width.
TEST(CudaKernels, FusedMatmulRefusesWhatItCannotTake) {
  REQUIRE_CUDA_DEVICE();
  Quantized4bit fits = on_gpu(quantize_4bit(at::randn({64, 96}), QuantType::nf4, 64, true));
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  EXPECT_TRUE(matmul_4bit_fused_supports(at::randn({20, 96}, bf16), fits, cuda::MatmulPass::forward));
  EXPECT_TRUE(matmul_4bit_fused_supports(at::randn({20, 64}, bf16), fits, cuda::MatmulPass::backward));
  EXPECT_FALSE(matmul_4bit_fused_supports(at::randn({20, 64}, bf16), fits, cuda::MatmulPass::forward));
  at::Tensor fp32 = at::randn({20, 96}, at::TensorOptions(at::kFloat).device(at::kCUDA));
  EXPECT_FALSE(matmul_4bit_fused_supports(fp32, fits, cuda::MatmulPass::forward));
  EXPECT_THROW(matmul_4bit_fused_cuda(fp32, fits, cuda::MatmulPass::forward), Error);
  for (Shape s : std::vector<Shape>{{64, 80}, {60, 96}}) {
    Quantized4bit q = on_gpu(quantize_4bit(at::randn({s.rows, s.cols}), QuantType::nf4, 64, true));
    EXPECT_FALSE(matmul_4bit_fused_supports(at::randn({20, s.cols}, bf16), q, cuda::MatmulPass::forward));
    EXPECT_THROW(matmul_4bit_fused_cuda(at::randn({20, s.cols}, bf16), q, cuda::MatmulPass::forward), Error);
  }
  // A contiguous view that starts 2 bytes into its storage: not 16-byte aligned, so not taken.
  at::Tensor shifted = at::randn({20 * 96 + 1}, bf16).narrow(0, 1, 20 * 96).view({20, 96});
  EXPECT_FALSE(matmul_4bit_fused_supports(shifted, fits, cuda::MatmulPass::forward));
}

// Training's autograd function with AUTOTRAIN_NF4_MATMUL=`choice` (set_training_matmul here): 2 x 33 rows of bf16
// take that kernel forward and backward (bit-identical to its direct calls with `tile`), and give what the fp64
// product of the dequantized weight gives.
void expect_linear_4bit_takes(TrainingMatmul choice, cuda::MatmulTile tile) {
  torch::manual_seed(9);
  Quantized4bit q = quantize_4bit(at::randn({72, 160}), QuantType::nf4, 64, true);
  Quantized4bit g = on_gpu(q);
  at::Tensor w = dequantize_4bit(q, at::kBFloat16);
  at::Tensor x = at::randn({2, 33, 160}).to(at::kBFloat16), upstream = at::randn({2, 33, 72}).to(at::kBFloat16);
  struct Choice {  // the choice goes back to what it was, whatever happens
    TrainingMatmul before = training_matmul();
    explicit Choice(TrainingMatmul choice) { set_training_matmul(choice); }
    ~Choice() { set_training_matmul(before); }
  };
  at::Tensor x_gpu = x.to(at::kCUDA).requires_grad_(true), y;
  {
    Choice chosen(choice);
    y = linear_4bit_cuda(x_gpu, g, at::Tensor());
    y.backward(upstream.to(at::kCUDA));
  }
  expect_close_to_fp64(y.detach().reshape({66, 72}), x.reshape({66, 160}), w.t(), at::kBFloat16);
  expect_close_to_fp64(x_gpu.grad().reshape({66, 160}), upstream.reshape({66, 72}), w, at::kBFloat16);
  EXPECT_TRUE(at::equal(y.detach(), matmul_4bit_fused_cuda(x.to(at::kCUDA), g, cuda::MatmulPass::forward, tile)));
  EXPECT_TRUE(at::equal(x_gpu.grad(),
                        matmul_4bit_fused_cuda(upstream.to(at::kCUDA), g, cuda::MatmulPass::backward, tile)));
}

TEST(CudaKernels, Linear4bitTakesTheFusedMatmulWhenAsked) {
  REQUIRE_CUDA_DEVICE();
  expect_linear_4bit_takes(TrainingMatmul::fused, cuda::MatmulTile::automatic);
}

// The same with AUTOTRAIN_NF4_MATMUL=wgmma: the Hopper tilings, where this GPU and build have them.
TEST(CudaKernels, WgmmaMatmulTakenByLinear4bitWhenAsked) {
  REQUIRE_CUDA_DEVICE();
  if (!cuda::matmul_4bit_wgmma_available()) GTEST_SKIP() << "not an sm_90 GPU, or no sm_90a code in this build";
  expect_linear_4bit_takes(TrainingMatmul::wgmma, cuda::MatmulTile::automatic_wgmma);
}

// The autograd function training uses: GEMV for a few rows, the matmul beyond, dx in the backward, bias,
// a 3-D input; against the CPU layer (src/frozen_linear.cpp) in fp32.
TEST(CudaKernels, Linear4bitAutogradMatchesTheCpuLayer) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(4);
  at::Tensor weight = at::randn({72, 160}), bias = at::randn({72});
  FrozenLinear cpu_layer(weight, bias, BaseQuantization::int4, at::kFloat, FourBitOptions{QuantType::nf4, 64, true});
  Quantized4bit q = on_gpu(quantize_4bit(weight, QuantType::nf4, 64, true));
  for (int64_t tokens : {1, 2, 4, 33}) {  // 2 x 1, 2 x 2 and 2 x 4 rows: GEMV; 2 x 33: the matmul
    SCOPED_TRACE("tokens " + std::to_string(tokens));
    at::Tensor x = at::randn({2, tokens, 160});
    at::Tensor upstream = at::randn({2, tokens, 72});
    at::Tensor x_cpu = x.clone().requires_grad_(true), x_gpu = x.to(at::kCUDA).requires_grad_(true);
    at::Tensor y_cpu = cpu_layer.forward(x_cpu);
    at::Tensor y_gpu = linear_4bit_cuda(x_gpu, q, bias.to(at::kCUDA));
    (y_cpu * upstream).sum().backward();
    (y_gpu * upstream.to(at::kCUDA)).sum().backward();
    // fp32, K = 160 and 72: sums of ~100 products of size ~1 in another order; 1e-4 absolute is ~10 ulps of
    // values ~10, while a wrong term is off by O(1).
    EXPECT_LE((y_gpu.cpu() - y_cpu.detach()).abs().max().item<double>(), 1e-4);
    EXPECT_LE((x_gpu.grad().cpu() - x_cpu.grad()).abs().max().item<double>(), 1e-4);
  }
}

// Fused q/k/v LoRA on the GPU against three separate LoRA layers on the CPU (the reference held to PEFT in
// tests/lora_test.cpp): outputs and the gradients of x, every A and every B, fp32. cuBLAS and the CPU's BLAS
// sum in other orders (~1e-6 relative here); 1e-4 of the largest value catches a wrong term.
TEST(CudaFusedLora, EqualsSeparateLayersOnTheCpu) {
  REQUIRE_CUDA_DEVICE();
  torch::manual_seed(8);
  const int64_t in = 96;
  const std::vector<int64_t> outs{96, 32, 32}, ranks{8, 8, 4};
  std::vector<LoraLinear> layers;
  std::vector<at::Tensor> weights, as, bs, bases;
  std::vector<double> scalings;
  for (size_t i = 0; i < outs.size(); ++i) {
    weights.push_back(at::randn({outs[i], in}) * 0.1);
    layers.emplace_back(std::make_shared<FrozenLinear>(weights.back(), at::Tensor(), BaseQuantization::none, at::kFloat),
                        LoraOptions{ranks[i], 16.0 + 8.0 * i, 0.0, false});
    at::NoGradGuard no_grad;
    layers.back()->lora_B.normal_();
  }
  const at::Tensor x0 = at::randn({2, 7, in}), upstream = at::randn({2, 7, 96 + 32 + 32});

  at::Tensor x_cpu = x0.clone().requires_grad_(true);
  std::vector<at::Tensor> cpu_outputs;
  for (auto& layer : layers) cpu_outputs.push_back(layer->forward(x_cpu));
  at::Tensor y_cpu = at::cat(cpu_outputs, -1);
  (y_cpu * upstream).sum().backward();

  at::Tensor x_gpu = x0.to(at::kCUDA).requires_grad_(true);
  for (size_t i = 0; i < layers.size(); ++i) {
    as.push_back(layers[i]->lora_A.detach().to(at::kCUDA).requires_grad_(true));
    bs.push_back(layers[i]->lora_B.detach().to(at::kCUDA).requires_grad_(true));
    bases.push_back(at::linear(x_gpu, weights[i].to(at::kCUDA)));
    scalings.push_back(layers[i]->scaling());
  }
  at::Tensor y_gpu = at::cat(fused_lora(x_gpu, bases, as, bs, scalings), -1);
  (y_gpu * upstream.to(at::kCUDA)).sum().backward();

  auto expect_close = [](const at::Tensor& gpu, const at::Tensor& cpu, const char* name) {
    const double scale = std::max(1.0, cpu.abs().max().item<double>());
    EXPECT_LE((gpu.cpu() - cpu).abs().max().item<double>(), 1e-4 * scale) << name;
  };
  expect_close(y_gpu.detach(), y_cpu.detach(), "y");
  expect_close(x_gpu.grad(), x_cpu.grad(), "dx");
  for (size_t i = 0; i < layers.size(); ++i) {
    expect_close(as[i].grad(), layers[i]->lora_A.grad(), "dA");
    expect_close(bs[i].grad(), layers[i]->lora_B.grad(), "dB");
  }
}

// ---- training and generation on the GPU against the same on the CPU ---------------------------------------

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

// A frozen weight moved to the GPU dequantizes there (torch ops) to the CPU's values bit for bit: one fp32
// product code * absmax per element and one rounding cast, both exact IEEE operations on either device.
TEST(CudaFrozenLinear, WeightOnTheGpuEqualsTheCpuWeight) {
  REQUIRE_CUDA_DEVICE();
  at::manual_seed(5);
  const at::Tensor weight = at::randn({67, 45}).mul_(0.05), bias = at::randn({67});
  const at::Device gpu(at::kCUDA, 0);
  for (BaseQuantization quantization : {BaseQuantization::none, BaseQuantization::int4, BaseQuantization::int8}) {
    for (bool double_quantize : {false, true}) {
      for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
        SCOPED_TRACE(::testing::Message() << "quantization " << static_cast<int>(quantization) << " " << dtype
                                          << (double_quantize ? " double" : ""));
        FourBitOptions four_bit{QuantType::nf4, 64, double_quantize};
        const FrozenLinear on_cpu(weight, bias, quantization, dtype, four_bit);
        FrozenLinear on_gpu(weight, bias, quantization, dtype, four_bit);
        on_gpu.to(gpu);
        const at::Tensor gpu_weight = on_gpu.weight(dtype);
        ASSERT_TRUE(gpu_weight.is_cuda());
        EXPECT_TRUE(at::equal(gpu_weight.cpu(), on_cpu.weight(dtype)));
        EXPECT_EQ(on_gpu.storage_bytes(), on_cpu.storage_bytes());
        if (quantization == BaseQuantization::int4) {  // quantized on the GPU, as CausalLM does for a GPU
          FrozenLinear quantized_there(weight.to(gpu), bias, quantization, dtype, four_bit);
          quantized_there.to(gpu);
          EXPECT_TRUE(at::equal(quantized_there.weight(dtype).cpu(), on_cpu.weight(dtype)));
        }
        // The matmul itself: cuBLAS and the CPU BLAS add the 45 products in other orders, so the outputs
        // differ by float rounding (fp32 ~1e-7 relative; fp16 / bf16 one rounding of the output, ~1e-2).
        const at::Tensor x = at::randn({3, 45}).to(dtype);
        const double bound = dtype == at::kFloat ? 1e-5 : 5e-2;
        EXPECT_LT(max_diff(on_gpu.forward(x.to(gpu)), on_cpu.forward(x)), bound);
      }
    }
  }
}

// Trains the llama fixture with the example data on `device` in fp32 and returns its folder.
std::string train_llama(const testing::TempDir& dir, const std::string& device, const std::string& quantization,
                        double dropout, int64_t stop_after_steps = 0) {
  TrainingParams p;
  p.model = kFixtures + "/models/llama";
  p.project_name = dir.file("run-" + device);
  p.data_path = std::string(AUTOTRAIN_SOURCE_DIR) + "/configs/example/data";
  p.block_size = 32;
  p.lr = 0.003;
  p.epochs = 1;
  p.batch_size = 4;
  p.gradient_accumulation = 2;
  p.scheduler = "cosine";
  p.quantization = quantization;
  p.target_modules = "q_proj, v_proj, down_proj";
  p.peft = true;
  p.lora_r = 8;
  p.lora_alpha = 16;
  p.lora_dropout = dropout;
  p.mixed_precision = "none";
  p.seed = 7;
  FinetuneOptions options;
  options.cache_dir = dir.file("cache");
  options.device = device;
  options.stop_after_steps = stop_after_steps;
  run_finetune(p, options);
  return p.project_name;
}

// The same run on the CPU and on the GPU, fp32, dropout 0 (the two devices draw dropout masks from different
// generators): every step's loss and the final LoRA weights agree within 1e-4. Not exactly: cuBLAS and the
// CPU BLAS (and the two SDPA kernels) sum in other orders, so each logit differs by fp32 rounding (~1e-6
// relative), which 13 AdamW steps carry along without growing past ~1e-5. TF32 (10-bit mantissa) would
// put the losses ~1e-3 apart, and a wrong batch, order, seed or divisor much further.
class CudaTrainingMatchesCpu : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaTrainingMatchesCpu, LossesAndWeights) {
  REQUIRE_CUDA_DEVICE();
  testing::TempDir dir;
  const std::string cpu = train_llama(dir, "cpu", GetParam(), 0.0);
  const std::string gpu = train_llama(dir, "cuda", GetParam(), 0.0);
  EXPECT_EQ(at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL),
            at::Float32Precision::IEEE) << "TF32 must be off for fp32 runs";

  const auto cpu_steps = read_metrics(cpu + "/metrics.jsonl"), gpu_steps = read_metrics(gpu + "/metrics.jsonl");
  ASSERT_EQ(cpu_steps.size(), gpu_steps.size());
  ASSERT_GE(cpu_steps.size(), 10u);
  double worst_loss = 0;
  for (size_t s = 0; s < cpu_steps.size(); ++s) {
    worst_loss = std::max(worst_loss, std::abs(cpu_steps[s]["loss"].get<double>() - gpu_steps[s]["loss"].get<double>()));
    EXPECT_FALSE(cpu_steps[s].contains("gpu_memory_bytes"));
    EXPECT_GT(gpu_steps[s].value("gpu_memory_bytes", int64_t{0}), 0) << gpu_steps[s].dump();
  }
  EXPECT_LT(worst_loss, 1e-4);

  auto cpu_adapter = SafetensorsFile::open(cpu + "/adapter_model.safetensors");
  auto gpu_adapter = SafetensorsFile::open(gpu + "/adapter_model.safetensors");
  ASSERT_EQ(cpu_adapter->names(), gpu_adapter->names());
  double worst_weight = 0;
  for (const auto& name : cpu_adapter->names())
    worst_weight = std::max(worst_weight, max_diff(cpu_adapter->tensor(name), gpu_adapter->tensor(name)));
  EXPECT_LT(worst_weight, 1e-4);
  std::printf("%zu steps, CPU vs CUDA (%s): max |loss diff| %.3g, max |weight diff| %.3g\n", cpu_steps.size(),
              GetParam().c_str(), worst_loss, worst_weight);
}

INSTANTIATE_TEST_SUITE_P(Fp32, CudaTrainingMatchesCpu, ::testing::Values("none", "int4"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Stopped after 5 steps and resumed, with dropout on: the checkpoint carries the optimizer moments (saved
// from and loaded back onto the GPU) and the GPU's RNG state, so the run ends where the uninterrupted one
// does. Not byte for byte: SDPA's backward on the GPU may add with atomics; 1e-6 is float rounding, while
// dropout masks drawn from a state that was not restored would move the weights by ~1e-3.
TEST(CudaTraining, ResumedRunEndsWithTheUninterruptedAdapter) {
  REQUIRE_CUDA_DEVICE();
  testing::TempDir whole, parts;
  const std::string full = train_llama(whole, "cuda", "int4", 0.1);
  train_llama(parts, "cuda", "int4", 0.1, /*stop_after_steps=*/5);
  const std::string resumed = train_llama(parts, "cuda", "int4", 0.1);
  auto expected = SafetensorsFile::open(full + "/adapter_model.safetensors");
  auto actual = SafetensorsFile::open(resumed + "/adapter_model.safetensors");
  double worst = 0;
  for (const auto& name : expected->names()) worst = std::max(worst, max_diff(expected->tensor(name), actual->tensor(name)));
  EXPECT_LT(worst, 1e-6);
  std::printf("resumed on CUDA vs uninterrupted: max |weight diff| %.3g\n", worst);
}

// Gradient checkpointing recomputes a layer in the backward: on the GPU it must replay the GPU generator's
// state, or the recompute draws other dropout masks than the forward and the gradients are wrong.
TEST(CudaTraining, CheckpointedLayersReplayTheGpuDropoutMasks) {
  REQUIRE_CUDA_DEVICE();
  std::map<bool, std::vector<at::Tensor>> gradients;
  const at::Tensor ids = at::arange(5, 5 + 2 * 24, at::kLong).remainder(997).view({2, 24});
  for (bool checkpointing : {false, true}) {
    at::manual_seed(3);
    ModelOptions options;
    options.lora_target_modules = {"q_proj", "v_proj", "down_proj"};
    options.lora = LoraOptions{8, 16, 0.3, false};
    options.gradient_checkpointing = checkpointing;
    options.device = at::Device(at::kCUDA, 0);
    CausalLM model(kFixtures + "/models/llama", options);
    {
      at::NoGradGuard no_grad;  // B nonzero, so that A gets a gradient too
      at::Generator values = at::detail::createCPUGenerator(17);
      for (auto& [name, parameter] : model.lora_parameters())
        if (name.find("lora_B") != std::string::npos)
          parameter.copy_(at::randn(parameter.sizes(), values, at::kFloat).mul_(0.1));
    }
    model.set_training(true);
    at::manual_seed(4);  // the same dropout masks in both runs
    causal_lm_loss(model.forward(ids), ids).backward();
    for (auto& [name, parameter] : model.lora_parameters()) gradients[checkpointing].push_back(parameter.grad().cpu());
  }
  // The recompute runs the same kernels on the same inputs; 1e-6 allows for SDPA's backward adding with
  // atomics. Other dropout masks would change the gradients by ~1e-1.
  ASSERT_EQ(gradients[false].size(), gradients[true].size());
  for (size_t i = 0; i < gradients[false].size(); ++i) EXPECT_LT(max_diff(gradients[false][i], gradients[true][i]), 1e-6) << i;
}

// Greedy generation on the GPU picks the CPU's tokens: the logits differ by fp32 rounding only, far less
// than the gaps between the best and second-best logits of the fixture's prompt.
TEST(CudaGenerate, GreedyTokensMatchTheCpu) {
  REQUIRE_CUDA_DEVICE();
  const std::vector<int64_t> prompt = {1, 45, 499, 173, 17, 299};  // the fixture has 1000 tokens
  GenerationOptions generation;
  generation.max_new_tokens = 32;
  std::map<std::string, std::vector<int64_t>> tokens;
  for (const std::string device : {"cpu", "cuda"}) {
    ModelOptions options;
    options.device = device == "cpu" ? at::Device(at::kCPU) : at::Device(at::kCUDA, 0);
    CausalLM model(kFixtures + "/models/llama", options);
    tokens[device] = generate_tokens(model, prompt, generation);
  }
  EXPECT_EQ(tokens["cuda"], tokens["cpu"]);
  EXPECT_EQ(tokens["cpu"].size(), 32u);
}

// What the generation tests below load: an NF4 base (double-quantized) in bf16 on the GPU, with LoRA on q, k and v or
// without.
ModelOptions nf4_generation_options(bool lora) {
  ModelOptions options;
  options.device = at::Device(at::kCUDA, 0);
  options.dtype = at::kBFloat16;
  options.quantization = BaseQuantization::int4;
  options.four_bit.double_quantize = true;
  if (lora) options.lora_target_modules = {"q_proj", "k_proj", "v_proj"};
  return options;
}

// A model loaded for generation with its 4-bit projections in the gemv_tiles layout (ModelOptions::gemv_tiles, what
// `generate` does unless AUTOTRAIN_GEMV_TILES=0) gives the logits of the rows layout bit for bit: the prompt's 12 rows
// (the dequantization and cuBLAS) and the next token's one (the tensor-core GEMV); llama, qwen2 (biases) and qwen3
// (q/k norms), with LoRA on q, k and v and without, with the GEMVs grouped or not (tiled weights are grouped in their
// layout).
TEST(CudaGenerate, TilesLayoutGivesTheLogitsOfTheRowsLayout) {
  REQUIRE_CUDA_DEVICE();
  const at::Tensor prompt =  // 12 rows of x: more than a GEMV takes
      at::tensor(std::vector<int64_t>{1, 45, 499, 173, 17, 299, 3, 88, 610, 7, 254, 31}, at::kLong).view({1, -1});
  const bool grouping = gemv_grouping();  // the default, restored at the end
  for (const std::string family : {"llama", "qwen2", "qwen3"})
    for (bool lora : {false, true})
      for (bool grouped : {false, true}) {
        SCOPED_TRACE(family + (lora ? " with LoRA on q, k and v" : "") + (grouped ? ", grouped GEMVs" : ""));
        set_gemv_grouping(grouped);
        std::map<bool, std::vector<at::Tensor>> logits;
        for (bool tiles : {false, true}) {
          ModelOptions options = nf4_generation_options(lora);
          options.gemv_tiles = tiles;
          torch::manual_seed(3);  // the same LoRA weights (B is zero at initialisation: drawn below)
          CausalLM model(kFixtures + "/models/" + family, options);
          // The fixtures' 2 layers: all but down_proj (176 columns, not a multiple of 64) tiled.
          EXPECT_EQ(model.gemv_tiled_projections(), tiles ? 2 * 6 : 0);
          at::NoGradGuard no_grad;
          for (auto& [name, parameter] : model.lora_parameters()) parameter.copy_(at::randn_like(parameter) * 0.1);
          KVCache cache = model.make_cache();
          logits[tiles].push_back(model.forward(prompt, {}, &cache).cpu());
          logits[tiles].push_back(model.forward(at::full({1, 1}, 42, at::kLong), {}, &cache).cpu());
        }
        for (size_t i = 0; i < 2; ++i) {
          EXPECT_TRUE(at::equal(logits[true][i], logits[false][i])) << i;
          EXPECT_GT(logits[false][i].abs().max().item<float>(), 0.0f) << i;
        }
      }
  set_gemv_grouping(grouping);
}

// A decoder layer's grouped GEMVs (q, k and v, with Qwen2's biases; gate and up) give the logits of the GEMVs one by
// one, bit for bit (the fixtures' projections are too small for the group to change the blocks' warps), with LoRA on
// q, k and v (the fused LoRA over the grouped bases) and without.
TEST(CudaGenerate, GroupedGemvsGiveTheLogitsOfOneByOne) {
  REQUIRE_CUDA_DEVICE();
  const at::Tensor prompt = at::tensor(std::vector<int64_t>{1, 45, 499, 173, 17, 299}, at::kLong).view({1, -1});
  const bool grouping = gemv_grouping();  // the default, restored after each model
  for (const std::string family : {"llama", "qwen2", "qwen3"})
    for (bool lora : {false, true}) {
      SCOPED_TRACE(family + (lora ? " with LoRA on q, k and v" : ""));
      CausalLM model(kFixtures + "/models/" + family, nf4_generation_options(lora));
      model.set_training(false);
      at::NoGradGuard no_grad;
      std::map<bool, std::vector<at::Tensor>> logits;
      for (bool grouped : {false, true}) {
        set_gemv_grouping(grouped);
        KVCache cache = model.make_cache();
        logits[grouped].push_back(model.forward(prompt, {}, &cache).cpu());  // 6 rows of x
        logits[grouped].push_back(model.forward(at::full({1, 1}, 42, at::kLong), {}, &cache).cpu());  // 1 row
      }
      set_gemv_grouping(grouping);
      for (size_t i = 0; i < 2; ++i) {
        EXPECT_TRUE(at::equal(logits[true][i], logits[false][i])) << i;
        EXPECT_GT(logits[false][i].abs().max().item<float>(), 0.0f) << i;
      }
    }
}
}  // namespace
}  // namespace autotrain
