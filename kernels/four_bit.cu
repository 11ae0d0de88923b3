// 4-bit (NF4 / FP4) weights on the GPU: dequantization to fp32 / fp16 / bf16. The CPU reference is
// src/quant.cpp (dequantize_4bit); tests/cuda_test.cpp holds these kernels to it bit for bit.
//
// Rounding follows the CPU exactly: a block's scale (double quantization: map value * nested absmax, then
// + offset) and each value (code * scale) are single fp32 operations, written with __fmul_rn / __fadd_rn
// so that nvcc cannot contract them into an FMA, and the value is then rounded to nearest-even in the
// output dtype. Dequantized weights are therefore bit-identical to the CPU's.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <type_traits>

#include "autotrain/cuda_kernels.h"
#include "four_bit_common.cuh"
#include "kernel_common.cuh"

namespace autotrain::cuda {

namespace {

// ---- dequantization --------------------------------------------------------------------------------------

// The 8 values of 4 packed bytes (one 32-bit word, the first byte lowest), each code * scale rounded to T.
template <typename T>
__device__ __forceinline__ void decode8(uint32_t word, uint32_t code_address, float scale, T (&values)[8]) {
  const uint32_t offsets[2] = {nibble_offsets(word, true), nibble_offsets(word, false)};
#pragma unroll
  for (int k = 0; k < 8; ++k)
    values[k] = from_float<T>(__fmul_rn(load_shared(code_entry(offsets[k & 1], code_address, k / 2)), scale));
}

// 8 values to an address aligned to 8 elements, as 16-byte stores.
template <typename T>
__device__ __forceinline__ void store8(T* dst, const T (&values)[8]) {
  if constexpr (sizeof(T) == 2) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(values);
  } else {
    reinterpret_cast<uint4*>(dst)[0] = *reinterpret_cast<const uint4*>(values);
    reinterpret_cast<uint4*>(dst)[1] = *reinterpret_cast<const uint4*>(values + 4);
  }
}

// Each thread takes kDequantizeUnroll groups of 8 flat indices, one grid apart, and reads all of their packed
// words before it decodes any: four 4-byte reads in flight per thread keep the memory busy, and the lanes of a
// warp still write 8 consecutive values each, side by side (one 512-byte run per store for bf16). (Reading 16
// bytes per thread instead, 32 values of one lane, halved the speed: each store then covered half sectors.)
constexpr int kDequantizeUnroll = 4;

// Each thread writes the elements of its 8-aligned groups of flat indices that fall in [first, last): 8
// elements share a block (blocksize is a power of two >= 32) and four packed bytes.
template <typename T>
__global__ void dequantize_kernel(const __grid_constant__ FourBitWeight w, const __grid_constant__ MapParam map_param,
                                  int64_t first, int64_t last, T* out) {
  __shared__ __align__(256) float code[16];  // for code_entry
  __shared__ float map[256];
  load_code_and_map(w, map_param, code, map);
  const uint32_t code_address = code_address_of(code);
  const int64_t total = w.rows * w.cols;
  const int64_t group_first = first / 8;
  const int64_t groups = (last + 7) / 8 - group_first;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t g0 = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g0 < groups; g0 += stride * kDequantizeUnroll) {
    uint32_t words[kDequantizeUnroll];
    BlockStats stats[kDequantizeUnroll];
#pragma unroll
    for (int u = 0; u < kDequantizeUnroll; ++u) {
      const int64_t g = g0 + u * stride, start = (group_first + g) * 8;
      words[u] = 0;
      if (g >= groups) continue;
      stats[u] = load_block_stats(w, block_of(w, start));
      if (start + 8 <= total) {
        words[u] = __ldg(reinterpret_cast<const uint32_t*>(w.packed) + start / 8);
      } else {  // the last group: read only the bytes that exist
        for (int64_t b = 0; start / 2 + b < (total + 1) / 2; ++b)
          words[u] |= uint32_t(w.packed[start / 2 + b]) << (8 * b);
      }
    }
    // Launched overlapping (set_dequantize_overlap), the block got here while the kernel before it may still run:
    // what it read so far is the weight, which no kernel writes while it is in use. `out` only from here (the
    // kernel before may still read the memory it takes over, a slice freed after the matmul before it). After
    // the first stride the wait returns at once.
    wait_for_prior_grids();
#pragma unroll
    for (int u = 0; u < kDequantizeUnroll; ++u) {
      const int64_t g = g0 + u * stride, start = (group_first + g) * 8;
      if (g >= groups) break;
      alignas(16) T values[8];
      decode8(words[u], code_address, scale_of(w, map, stats[u]), values);
      T* dst = out + (start - first);
      if (start >= first && start + 8 <= last && first % 8 == 0) {
        store8(dst, values);  // 8 whole values at an 8-aligned address (the output starts aligned; torch's are)
      } else {
        for (int k = 0; k < 8; ++k)
          if (start + k >= first && start + k < last) dst[k] = values[k];
      }
    }
  }
}

// The 4-byte word of the packed bytes of values (row, col ... col + 7), col a multiple of 8, in the gemv_tiles
// layout (cuda_kernels.h): in the 512 bytes of (tile row / 16, chunk col / 64), lane 4 g + t's 16 bytes, with g
// = row % 8 and t = (col % 64) / 16, hold its packed bytes 8 t ... 8 t + 7 of row g, then of row g + 8; the word
// is the first or second half of those 8 bytes (col % 16 = 0 or 8). `chunks`: cols / 64.
__device__ __forceinline__ int64_t gemv_tiles_word(int64_t row, int64_t col, int64_t chunks) {
  const int64_t lane = 4 * (row % 8) + (col % 64) / 16;
  return (((row / 16) * chunks + col / 64) * 32 + lane) * 4 + 2 * ((row % 16) / 8) + (col % 16) / 8;
}

// A block of columns [col_begin, col_begin + width) of rows [row_begin, row_begin + height): out is
// height x width. When the columns and the weight's rows are 8-aligned, each thread writes 8 values per group
// from one 4-byte read, kDequantizeUnroll groups at a time (as above); otherwise it goes element by element.
// kTiles: the weight is in the gemv_tiles layout, whose columns are a multiple of 64, and the launcher gives it
// 8-aligned columns only (every group's word is then one 4-byte read, found by gemv_tiles_word).
template <typename T, bool kTiles>
__global__ void dequantize_columns_kernel(const __grid_constant__ FourBitWeight w,
                                          const __grid_constant__ MapParam map_param, int64_t row_begin, int64_t height,
                                          int64_t col_begin, int64_t width, T* out) {
  __shared__ __align__(256) float code[16];  // for code_entry
  __shared__ float map[256];
  load_code_and_map(w, map_param, code, map);
  const uint32_t code_address = code_address_of(code);
  const bool aligned = kTiles || (w.cols % 8 == 0 && col_begin % 8 == 0 && width % 8 == 0);
  const int64_t per_row = aligned ? width / 8 : width;
  const int64_t items = height * per_row;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  // The row and column of item g; 32-bit division where the counts fit (a 64-bit one costs several times more).
  auto place = [&](int64_t g, int64_t& r, int64_t& c) {
    r = items <= UINT32_MAX ? uint32_t(g) / uint32_t(per_row) : g / per_row;
    c = g - r * per_row;
  };
  if (!aligned) {
    wait_for_prior_grids();  // before any write to out (see dequantize_kernel)
    for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < items; g += stride) {
      int64_t r, c;
      place(g, r, c);
      out[r * width + c] = from_float<T>(element(w, code, map, (row_begin + r) * w.cols + col_begin + c));
    }
    return;
  }
  for (int64_t g0 = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g0 < items; g0 += stride * kDequantizeUnroll) {
    uint32_t words[kDequantizeUnroll];
    BlockStats stats[kDequantizeUnroll];
    int64_t at[kDequantizeUnroll];  // where the group's 8 values go in out
#pragma unroll
    for (int u = 0; u < kDequantizeUnroll; ++u) {
      const int64_t g = g0 + u * stride;
      words[u] = 0;
      at[u] = 0;
      if (g >= items) continue;
      int64_t r, c;
      place(g, r, c);
      const int64_t start = (row_begin + r) * w.cols + col_begin + c * 8;
      stats[u] = load_block_stats(w, block_of(w, start));
      const int64_t word = kTiles ? gemv_tiles_word(row_begin + r, col_begin + c * 8, w.cols / 64) : start / 8;
      words[u] = __ldg(reinterpret_cast<const uint32_t*>(w.packed) + word);
      at[u] = r * width + c * 8;
    }
    wait_for_prior_grids();  // before any write to out (see dequantize_kernel)
#pragma unroll
    for (int u = 0; u < kDequantizeUnroll; ++u) {
      if (g0 + u * stride >= items) break;
      alignas(16) T values[8];
      decode8(words[u], code_address, scale_of(w, map, stats[u]), values);
      store8(out + at[u], values);
    }
  }
}


constexpr unsigned kDequantizeThreads = 256;

std::atomic<bool> g_dequantize_overlap{false};

template <typename T>
void launch_dequantize(const FourBitWeight& w, const MapParam& param, int64_t first, int64_t last, void* out,
                       cudaStream_t s) {
  const unsigned blocks = grid_for((last + 7) / 8 - first / 8, kDequantizeThreads);
  launch_kernel_overlapping(dequantize_kernel<T>, blocks, kDequantizeThreads, 0, s, g_dequantize_overlap.load(), w,
                            param, first, last, static_cast<T*>(out));
}

template <typename T, bool kTiles>
void launch_dequantize_columns(const FourBitWeight& w, const MapParam& param, int64_t row_begin, int64_t height,
                               int64_t col_begin, int64_t width, void* out, cudaStream_t s) {
  const unsigned blocks = grid_for(height * width / 8 + 1, kDequantizeThreads);
  launch_kernel_overlapping(dequantize_columns_kernel<T, kTiles>, blocks, kDequantizeThreads, 0, s,
                            g_dequantize_overlap.load(), w, param, row_begin, height, col_begin, width,
                            static_cast<T*>(out));
}

}  // namespace

void set_dequantize_overlap(bool on) { g_dequantize_overlap.store(on); }
bool dequantize_overlap() { return g_dequantize_overlap.load(); }

const char* use_device(int index) {
  int current = -1;
  if (cudaError_t status = cudaGetDevice(&current); status != cudaSuccess) return cudaGetErrorString(status);
  if (current == index) return nullptr;
  const cudaError_t status = cudaSetDevice(index);
  return status == cudaSuccess ? nullptr : cudaGetErrorString(status);
}

const char* dequantize_4bit(const FourBitWeight& w, const DynamicMap* map, int64_t row_begin, int64_t row_end,
                            int64_t col_begin, int64_t col_end, void* out, DType dtype, void* stream) {
  if (const char* problem = check_weight(w, map, /*tiles=*/true)) return problem;
  if (row_begin < 0 || row_end > w.rows || row_begin > row_end || col_begin < 0 || col_end > w.cols ||
      col_begin > col_end)
    return "dequantize_4bit: rows or columns out of bounds";
  const bool tiles = w.layout == FourBitLayout::gemv_tiles;
  if (tiles && (w.cols % 64 != 0 || col_begin % 8 != 0 || col_end % 8 != 0))
    return "dequantize_4bit: a weight in the gemv_tiles layout takes columns in multiples of 8";
  if (row_begin == row_end || col_begin == col_end) return nullptr;
  const MapParam param = map_param_of(w, map);
  auto s = static_cast<cudaStream_t>(stream);
  const int64_t height = row_end - row_begin, width = col_end - col_begin;
  const bool whole_rows = col_begin == 0 && col_end == w.cols;  // one contiguous run of the flat weight
  const int64_t first = row_begin * w.cols, last = row_end * w.cols;
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    if (tiles)
      launch_dequantize_columns<T, true>(w, param, row_begin, height, col_begin, width, out, s);
    else if (whole_rows)
      launch_dequantize<T>(w, param, first, last, out, s);
    else
      launch_dequantize_columns<T, false>(w, param, row_begin, height, col_begin, width, out, s);
  });
  return launch_status();
}

}  // namespace autotrain::cuda
