// 4-bit (NF4 / FP4) weights on the GPU: dequantization to fp32 / fp16 / bf16, and the GEMV of token
// generation. The CPU reference is src/quant.cpp (dequantize_4bit); tests/cuda_test.cpp holds these to it.
//
// Rounding follows the CPU exactly: a block's scale (double quantization: map value * nested absmax, then
// + offset) and each value (code * scale) are single fp32 operations, written with __fmul_rn / __fadd_rn
// so that nvcc cannot contract them into an FMA, and the value is then rounded to nearest-even in the
// output dtype. Dequantized weights are therefore bit-identical to the CPU's.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "autotrain/cuda_kernels.h"

namespace autotrain::cuda {

namespace {

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// The map is needed only with double quantization; kernels take it by value (1 KiB of parameters).
struct MapParam {
  DynamicMap map;
};

__device__ __forceinline__ float block_scale(const FourBitWeight& w, const float* map, int64_t block) {
  if (w.absmax != nullptr) return w.absmax[block];
  const float nested = __fmul_rn(map[w.nested_codes[block]], w.nested_absmax[block / w.nested_blocksize]);
  return __fadd_rn(nested, w.offset);
}

// The value of flat element i (in fp32, before rounding to the output dtype).
__device__ __forceinline__ float element(const FourBitWeight& w, const float* code, const float* map, int64_t i) {
  const uint8_t byte = w.packed[i >> 1];
  const int nibble = (i & 1) ? (byte & 0x0F) : (byte >> 4);
  return __fmul_rn(code[nibble], block_scale(w, map, i / w.blocksize));
}

// ---- dequantization --------------------------------------------------------------------------------------

// Each thread writes the elements of one 8-aligned group of flat indices that fall in [first, last): 8
// elements share a block (blocksize is a multiple of 32) and four packed bytes.
template <typename T>
__global__ void dequantize_kernel(FourBitWeight w, MapParam map_param, int64_t first, int64_t last, T* out) {
  __shared__ float code[16];
  __shared__ float map[256];
  if (threadIdx.x < 16) code[threadIdx.x] = w.code[threadIdx.x];
  if (w.absmax == nullptr)
    for (int k = threadIdx.x; k < 256; k += blockDim.x) map[k] = map_param.map.values[k];
  __syncthreads();
  const int64_t total = w.rows * w.cols;
  const int64_t group_first = first / 8;
  const int64_t groups = (last + 7) / 8 - group_first;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t start = (group_first + g) * 8;
    const float scale = block_scale(w, map, start / w.blocksize);
    uint32_t word;
    if (start + 8 <= total) {
      word = __ldg(reinterpret_cast<const uint32_t*>(w.packed) + start / 8);
    } else {  // the last group: read only the bytes that exist
      word = 0;
      for (int64_t b = 0; start / 2 + b < (total + 1) / 2; ++b) word |= uint32_t(w.packed[start / 2 + b]) << (8 * b);
    }
    alignas(16) T values[8];  // stored as 16-byte words below
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t byte = (word >> (8 * (k / 2))) & 0xFF;
      const uint32_t nibble = (k & 1) ? (byte & 0x0F) : (byte >> 4);
      values[k] = from_float<T>(__fmul_rn(code[nibble], scale));
    }
    T* dst = out + (start - first);
    if (start >= first && start + 8 <= last && first % 8 == 0) {
      // 8 whole values at an address aligned to 8 elements (the output starts aligned; torch's are)
      if constexpr (sizeof(T) == 2) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(values);
      } else {
        reinterpret_cast<uint4*>(dst)[0] = *reinterpret_cast<const uint4*>(values);
        reinterpret_cast<uint4*>(dst)[1] = *reinterpret_cast<const uint4*>(values + 4);
      }
    } else {
      for (int k = 0; k < 8; ++k)
        if (start + k >= first && start + k < last) dst[k] = values[k];
    }
  }
}

// A block of columns [col_begin, col_begin + width) of rows [row_begin, row_begin + height): out is
// height x width. When the columns and the weight's rows are 8-aligned, each thread writes 8 values from one
// 4-byte read (as above); otherwise it goes element by element.
template <typename T>
__global__ void dequantize_columns_kernel(FourBitWeight w, MapParam map_param, int64_t row_begin, int64_t height,
                                          int64_t col_begin, int64_t width, T* out) {
  __shared__ float code[16];
  __shared__ float map[256];
  if (threadIdx.x < 16) code[threadIdx.x] = w.code[threadIdx.x];
  if (w.absmax == nullptr)
    for (int k = threadIdx.x; k < 256; k += blockDim.x) map[k] = map_param.map.values[k];
  __syncthreads();
  const bool aligned = w.cols % 8 == 0 && col_begin % 8 == 0 && width % 8 == 0;
  const int64_t per_row = aligned ? width / 8 : width;
  const int64_t items = height * per_row;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < items; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = g / per_row, c = g % per_row;
    if (!aligned) {
      out[r * width + c] = from_float<T>(element(w, code, map, (row_begin + r) * w.cols + col_begin + c));
      continue;
    }
    const int64_t start = (row_begin + r) * w.cols + col_begin + c * 8;
    const float scale = block_scale(w, map, start / w.blocksize);
    const uint32_t word = __ldg(reinterpret_cast<const uint32_t*>(w.packed) + start / 8);
    alignas(16) T values[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t byte = (word >> (8 * (k / 2))) & 0xFF;
      const uint32_t nibble = (k & 1) ? (byte & 0x0F) : (byte >> 4);
      values[k] = from_float<T>(__fmul_rn(code[nibble], scale));
    }
    T* dst = out + r * width + c * 8;
    if constexpr (sizeof(T) == 2) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(values);
    } else {
      reinterpret_cast<uint4*>(dst)[0] = *reinterpret_cast<const uint4*>(values);
      reinterpret_cast<uint4*>(dst)[1] = *reinterpret_cast<const uint4*>(values + 4);
    }
  }
}

// Blocks for a grid-stride kernel: enough to fill the device a few times over, few enough that the per-block
// set-up (the code and map into shared memory) is paid rarely.
unsigned grid_for(int64_t items, unsigned threads) {
  static const int64_t limit = [] {
    int device = 0, sms = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    return int64_t(std::max(sms, 1)) * 8;
  }();
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((items + threads - 1) / threads, limit)));
}

// ---- GEMV ------------------------------------------------------------------------------------------------

constexpr int kWarpsPerBlock = 4;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// 8 consecutive x values (16-byte aligned for 2-byte types, 32-byte for fp32) as floats.
template <typename T>
__device__ __forceinline__ void load8(const T* p, float* out) {
  if constexpr (sizeof(T) == 2) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int k = 0; k < 8; ++k) out[k] = to_float(v[k]);
  } else {
    const float4 a = __ldg(reinterpret_cast<const float4*>(p));
    const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
  }
}

// cols % 32 == 0: each lane reads 16 packed bytes (32 values, within one block) of each of the warp's rows
// per 1024-column chunk, so every byte of the weight is read once, in 512-byte runs per warp. The reads of
// kGemvChunks chunks are issued before any is used, so that a row of 4096 columns costs one trip to memory.
constexpr int kGemvRows = 2;    // rows per warp
constexpr int kGemvChunks = 4;  // 1024-column chunks in flight at once

template <typename T, int M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(FourBitWeight w, MapParam map_param, const T* __restrict__ x, T* __restrict__ y) {
  __shared__ float code[16];
  __shared__ float map[256];
  if (threadIdx.x < 16) code[threadIdx.x] = w.code[threadIdx.x];
  if (w.absmax == nullptr)
    for (int k = threadIdx.x; k < 256; k += blockDim.x) map[k] = map_param.map.values[k];
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t row0 = (int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32) * kGemvRows;
  if (row0 >= w.rows) return;
  float acc[kGemvRows][M] = {};
  const int64_t cols = w.cols;
  for (int64_t base = int64_t(lane) * 32; base < cols; base += 1024 * kGemvChunks) {
    uint4 words[kGemvChunks][kGemvRows];
    float scale[kGemvChunks][kGemvRows];
#pragma unroll
    for (int c = 0; c < kGemvChunks; ++c)
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        const int64_t k = base + c * 1024;
        words[c][r] = make_uint4(0, 0, 0, 0);
        scale[c][r] = 0.0f;
        if (k < cols) {
          const int64_t row = min(row0 + r, w.rows - 1);  // rows past the end repeat the last; never written
          const int64_t start = row * cols + k;
          words[c][r] = __ldg(reinterpret_cast<const uint4*>(w.packed + start / 2));
          scale[c][r] = block_scale(w, map, start / w.blocksize);
        }
      }
#pragma unroll
    for (int c = 0; c < kGemvChunks; ++c) {
      const int64_t k = base + c * 1024;
      if (k >= cols) break;
#pragma unroll
      for (int part = 0; part < 4; ++part) {  // 8 values of each row at a time
        float wv[kGemvRows][8];
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r) {
          const uint4& q = words[c][r];
          const uint32_t word = part == 0 ? q.x : part == 1 ? q.y : part == 2 ? q.z : q.w;
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const uint32_t byte = (word >> (8 * (e / 2))) & 0xFF;
            const uint32_t nibble = (e & 1) ? (byte & 0x0F) : (byte >> 4);
            wv[r][e] = to_float(from_float<T>(__fmul_rn(code[nibble], scale[c][r])));
          }
        }
#pragma unroll
        for (int m = 0; m < M; ++m) {
          float xv[8];
          load8(x + m * cols + k + part * 8, xv);
#pragma unroll
          for (int r = 0; r < kGemvRows; ++r)
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r][m] = fmaf(wv[r][e], xv[e], acc[r][m]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float sum = warp_sum(acc[r][m]);
      if (lane == 0 && row0 + r < w.rows) y[m * w.rows + row0 + r] = from_float<T>(sum);
    }
}

// Any shape: one warp per row, element by element.
template <typename T>
__global__ void gemv_any_kernel(FourBitWeight w, MapParam map_param, const T* __restrict__ x, int m_count,
                                T* __restrict__ y) {
  __shared__ float code[16];
  __shared__ float map[256];
  if (threadIdx.x < 16) code[threadIdx.x] = w.code[threadIdx.x];
  if (w.absmax == nullptr)
    for (int k = threadIdx.x; k < 256; k += blockDim.x) map[k] = map_param.map.values[k];
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= w.rows) return;
  float acc[kMaxGemvRows] = {};
  for (int64_t k = lane; k < w.cols; k += 32) {
    const float v = to_float(from_float<T>(element(w, code, map, row * w.cols + k)));
    for (int m = 0; m < m_count; ++m) acc[m] = fmaf(v, to_float(x[m * w.cols + k]), acc[m]);
  }
  for (int m = 0; m < m_count; ++m) {
    const float sum = warp_sum(acc[m]);
    if (lane == 0) y[m * w.rows + row] = from_float<T>(sum);
  }
}

MapParam map_param_of(const FourBitWeight& w, const DynamicMap* map) {
  MapParam param{};
  if (w.absmax == nullptr && map != nullptr) param.map = *map;
  return param;
}

const char* check_weight(const FourBitWeight& w, const DynamicMap* map) {
  if (w.packed == nullptr || w.rows <= 0 || w.cols <= 0) return "4-bit kernel: empty weight";
  if (w.blocksize < 32 || w.blocksize % 32 != 0) return "4-bit kernel: blocksize must be a multiple of 32";
  if (w.absmax == nullptr && (w.nested_codes == nullptr || w.nested_absmax == nullptr || map == nullptr))
    return "4-bit kernel: a double-quantized weight needs its nested codes, nested absmax and map";
  return nullptr;
}

const char* launch_status() {
  const cudaError_t status = cudaGetLastError();
  return status == cudaSuccess ? nullptr : cudaGetErrorString(status);
}

template <typename T>
void launch_gemv(const FourBitWeight& w, const MapParam& map, const void* x, int64_t m, void* y, cudaStream_t stream) {
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  const bool aligned = w.cols % 32 == 0 && reinterpret_cast<uintptr_t>(w.packed) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(x) % 32 == 0;
  if (!aligned) {
    const unsigned blocks = static_cast<unsigned>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    gemv_any_kernel<T><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(w, map, xt, static_cast<int>(m), yt);
    return;
  }
  const int64_t rows_per_block = kWarpsPerBlock * kGemvRows;
  const unsigned blocks = static_cast<unsigned>((w.rows + rows_per_block - 1) / rows_per_block);
  const unsigned threads = kWarpsPerBlock * 32;
  switch (m) {
    case 1: gemv_kernel<T, 1><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
    case 2: gemv_kernel<T, 2><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
    case 3: gemv_kernel<T, 3><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
    case 4: gemv_kernel<T, 4><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
    case 5: gemv_kernel<T, 5><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
    case 6: gemv_kernel<T, 6><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
    case 7: gemv_kernel<T, 7><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
    default: gemv_kernel<T, 8><<<blocks, threads, 0, stream>>>(w, map, xt, yt); break;
  }
}

}  // namespace

const char* use_device(int index) {
  int current = -1;
  if (cudaError_t status = cudaGetDevice(&current); status != cudaSuccess) return cudaGetErrorString(status);
  if (current == index) return nullptr;
  const cudaError_t status = cudaSetDevice(index);
  return status == cudaSuccess ? nullptr : cudaGetErrorString(status);
}

const char* dequantize_4bit(const FourBitWeight& w, const DynamicMap* map, int64_t row_begin, int64_t row_end,
                            int64_t col_begin, int64_t col_end, void* out, DType dtype, void* stream) {
  if (const char* problem = check_weight(w, map)) return problem;
  if (row_begin < 0 || row_end > w.rows || row_begin > row_end || col_begin < 0 || col_end > w.cols ||
      col_begin > col_end)
    return "dequantize_4bit: rows or columns out of bounds";
  if (row_begin == row_end || col_begin == col_end) return nullptr;
  const MapParam param = map_param_of(w, map);
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned threads = 256;
  if (col_begin == 0 && col_end == w.cols) {  // whole rows: one contiguous run of the flat weight
    const int64_t first = row_begin * w.cols, last = row_end * w.cols;
    const unsigned blocks = grid_for((last + 7) / 8 - first / 8, threads);
    switch (dtype) {
      case DType::f32: dequantize_kernel<float><<<blocks, threads, 0, s>>>(w, param, first, last, static_cast<float*>(out)); break;
      case DType::f16: dequantize_kernel<__half><<<blocks, threads, 0, s>>>(w, param, first, last, static_cast<__half*>(out)); break;
      case DType::bf16:
        dequantize_kernel<__nv_bfloat16><<<blocks, threads, 0, s>>>(w, param, first, last, static_cast<__nv_bfloat16*>(out));
        break;
    }
    return launch_status();
  }
  const int64_t height = row_end - row_begin, width = col_end - col_begin;
  const unsigned blocks = grid_for(height * width / 8 + 1, threads);
  switch (dtype) {
    case DType::f32:
      dequantize_columns_kernel<float><<<blocks, threads, 0, s>>>(w, param, row_begin, height, col_begin, width,
                                                                  static_cast<float*>(out));
      break;
    case DType::f16:
      dequantize_columns_kernel<__half><<<blocks, threads, 0, s>>>(w, param, row_begin, height, col_begin, width,
                                                                   static_cast<__half*>(out));
      break;
    case DType::bf16:
      dequantize_columns_kernel<__nv_bfloat16><<<blocks, threads, 0, s>>>(w, param, row_begin, height, col_begin,
                                                                          width, static_cast<__nv_bfloat16*>(out));
      break;
  }
  return launch_status();
}

const char* gemv_4bit(const FourBitWeight& w, const DynamicMap* map, const void* x, int64_t m, void* y, DType dtype,
                      void* stream) {
  if (const char* problem = check_weight(w, map)) return problem;
  if (m < 1 || m > kMaxGemvRows) return "gemv_4bit: m must be 1 ... 8";
  const MapParam param = map_param_of(w, map);
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32: launch_gemv<float>(w, param, x, m, y, s); break;
    case DType::f16: launch_gemv<__half>(w, param, x, m, y, s); break;
    case DType::bf16: launch_gemv<__nv_bfloat16>(w, param, x, m, y, s); break;
  }
  return launch_status();
}

}  // namespace autotrain::cuda
