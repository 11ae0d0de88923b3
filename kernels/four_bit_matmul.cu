// The 4-bit matmul of training shapes on tensor cores, with the weight dequantized tile by tile into shared
// memory (never whole into global memory):
//   forward   y (m, rows) = x (m, cols) . W^T
//   backward dx (m, cols) = dy (m, rows) . W
// The CPU reference is dequantize_4bit (src/quant.cpp) followed by a matmul; tests/cuda_test.cpp holds this
// kernel to it. Each weight value is code * scale in fp32 rounded to the dtype, exactly as dequantize_4bit
// writes it, and products accumulate in fp32 (mma.m16n8k16), rounded to the dtype once at the end.
//
// As a GEMM C (m, n) = A (m, k) . B (k, n): A is x or dy, row-major (cp.async to shared memory); B is W^T
// forward (B[k][n] = W[n][k]: the weight's rows are B's columns) and W backward (B[k][n] = W[k][n]).
//
// A block computes a 128 x 128 tile of C with 8 warps (2 along m x 4 along n, 64 x 32 each) and walks k in tiles
// of 32. Per k tile: the A tile (128 x 32) and the packed weight tile (2 KiB) are copied with cp.async, kStages - 1
// tiles ahead; the packed tile is then dequantized into one of two dense tiles of shared memory while the warps
// multiply the other one:
//   wait for tile t + 1; __syncthreads; start copying tile t + kStages - 1; MMA on tile t; dequantize tile t + 1.
// Shared rows are padded by 16 bytes so that ldmatrix's eight 16-byte rows fall in distinct banks.
//
// The weight tile is in B's natural layout for each pass: forward [n][k] (weight rows, read by ldmatrix), backward
// [k][n] (weight rows again, read by ldmatrix.trans); in both, a thread dequantizes 8 packed bytes (16 values of
// one row, inside one quantization block as blocks are >= 32 values and aligned) with one scale.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "autotrain/cuda_kernels.h"
#include "four_bit_common.cuh"
#include "kernel_common.cuh"

namespace autotrain::cuda {

namespace {

constexpr int kTileM = 128, kTileN = 128, kTileK = 32;
constexpr int kStages = 4;
constexpr int kThreads = 256;
constexpr int kPad = 8;                              // elements of padding per shared row (16 bytes)
constexpr int kARow = kTileK + kPad;                 // A tile [m][k]
constexpr int kForwardBRow = kTileK + kPad;          // forward B tile [n][k]
constexpr int kBackwardBRow = kTileN + kPad;         // backward B tile [k][n]
constexpr int kPackedTileBytes = kTileN * kTileK / 2;  // 2 KiB of packed weight per k tile, either pass
constexpr int kAStageElements = kTileM * kARow;
constexpr int kBTileElements = kTileN * kForwardBRow > kTileK * kBackwardBRow ? kTileN * kForwardBRow
                                                                               : kTileK * kBackwardBRow;
static_assert(kTileN * kTileK / 16 == kThreads, "each thread dequantizes 8 packed bytes of a k tile");

template <typename T>
constexpr size_t shared_bytes() {
  return kStages * (kAStageElements * sizeof(T) + kPackedTileBytes) + 2 * kBTileElements * sizeof(T);
}

// ---- PTX wrappers (sm_80+; the launcher refuses older devices) -------------------------------------------

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes from global to shared memory, or 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void copy16_async(void* dst, const void* src, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0));
#else
  __trap();
#endif
}

__device__ __forceinline__ void commit_copies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most `pending` committed groups of this thread's copies are still in flight.
template <int pending>
__device__ __forceinline__ void wait_copies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
#endif
}

// Four 8 x 8 matrices of 16-bit values; lane l gives the address of row l % 8 of matrix l / 8.
template <bool transposed>
__device__ __forceinline__ void load_matrices(uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (transposed)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
#else
  __trap();
#endif
}

// ---- the kernel ------------------------------------------------------------------------------------------

struct MatmulShape {
  int64_t m = 0, n = 0, k = 0;  // C (m, n) = A (m, k) . B (k, n)
};

// Where a thread's 8 packed bytes of k tile `kt` lie in the weight: its row and first column, and whether
// they exist (a tile may hang over the weight's last row or column; those values multiply zeros or are never
// stored, and are read as zeros). Forward: the tile is rows n0 .. n0 + 127 x columns kt * 32 .. + 31, two threads
// per row. Backward: rows kt * 32 .. + 31 x columns n0 .. n0 + 127, eight threads per row.
template <bool backward>
struct PackedPiece {
  int tile_row = 0, tile_col = 0;  // in the tile: B[.][.] in the pass's layout, see the file comment
  int64_t row = 0, col = 0;        // in the weight
  bool valid = false;
};

template <bool backward>
__device__ __forceinline__ PackedPiece<backward> packed_piece(const FourBitWeight& w, int piece, int64_t n0,
                                                              int64_t kt) {
  PackedPiece<backward> p;
  if constexpr (!backward) {
    p.tile_row = piece / 2;
    p.tile_col = (piece % 2) * 16;
    p.row = n0 + p.tile_row;
    p.col = kt * kTileK + p.tile_col;
  } else {
    p.tile_row = piece / 8;
    p.tile_col = (piece % 8) * 16;
    p.row = kt * kTileK + p.tile_row;
    p.col = n0 + p.tile_col;
  }
  p.valid = p.row < w.rows && p.col < w.cols;
  return p;
}

// Copies k tile `kt` of A and of the packed weight into stage `stage` (zeros where they hang over the edges).
template <typename T, bool backward>
__device__ __forceinline__ void copy_tile(const FourBitWeight& w, const T* __restrict__ a, MatmulShape shape,
                                          int64_t m0, int64_t n0, int64_t kt, T* a_stage, uint8_t* packed_stage) {
  // A: 128 rows x 32 columns = 512 pieces of 8 values (shape.k is a multiple of 8: whole pieces exist or not).
#pragma unroll
  for (int i = 0; i < kTileM * kTileK / 8 / kThreads; ++i) {
    const int piece = threadIdx.x + i * kThreads;
    const int r = piece / (kTileK / 8), c = (piece % (kTileK / 8)) * 8;
    const int64_t row = m0 + r, col = kt * kTileK + c;
    const bool valid = row < shape.m && col < shape.k;
    copy16_async(a_stage + r * kARow + c, valid ? a + row * shape.k + col : a, valid);
  }
  // The packed weight: 128 pieces of 16 bytes (32 values of one row); threads 0 .. 127 copy one each. Piece
  // p holds the bytes of dequantization pieces 2p and 2p + 1 (packed_piece), stored in that order.
  if (threadIdx.x < kPackedTileBytes / 16) {
    const PackedPiece<backward> p = packed_piece<backward>(w, 2 * threadIdx.x, n0, kt);
    const uint8_t* src = w.packed + (p.row * w.cols + p.col) / 2;
    copy16_async(packed_stage + 16 * threadIdx.x, p.valid ? src : w.packed, p.valid);
  }
}

// The scale of this thread's dequantization piece of k tile `kt` (0 where the piece does not exist).
template <bool backward>
__device__ __forceinline__ float piece_scale(const FourBitWeight& w, const float* map, int64_t n0, int64_t kt) {
  const PackedPiece<backward> p = packed_piece<backward>(w, threadIdx.x, n0, kt);
  return p.valid ? block_scale(w, map, block_of(w, p.row * w.cols + p.col)) : 0.0f;
}

// This thread's 8 packed bytes of the stage into 16 dense values of the B tile, each code * scale rounded to T.
template <typename T, bool backward>
__device__ __forceinline__ void dequantize_piece(const FourBitWeight& w, const uint8_t* packed_stage,
                                                 const float* code, float scale, int64_t n0, int64_t kt, T* b_tile) {
  const PackedPiece<backward> p = packed_piece<backward>(w, threadIdx.x, n0, kt);
  const uint2 bytes = *reinterpret_cast<const uint2*>(packed_stage + 8 * threadIdx.x);
  uint32_t pairs[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t byte = ((i < 4 ? bytes.x : bytes.y) >> (8 * (i % 4))) & 0xFFu;
    pairs[i] = pack_pair<T>(__fmul_rn(code[byte >> 4], scale), __fmul_rn(code[byte & 0x0Fu], scale));
  }
  const int row_elements = backward ? kBackwardBRow : kForwardBRow;
  uint4* dst = reinterpret_cast<uint4*>(b_tile + p.tile_row * row_elements + p.tile_col);
  dst[0] = make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
  dst[1] = make_uint4(pairs[4], pairs[5], pairs[6], pairs[7]);
}

// One k tile (two k steps of 16) of the warp's 64 x 32 part of C.
template <typename T, bool backward>
__device__ __forceinline__ void multiply_tile(const T* a_stage, const T* b_tile, int warp_m, int warp_n,
                                              float (&acc)[4][4][4]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int ks = 0; ks < kTileK; ks += 16) {
    uint32_t a[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)  // matrices: rows 0-7 / 8-15 x columns 0-7, then the same x columns 8-15
      load_matrices<false>(a[i], a_stage + (warp_m * 64 + i * 16 + lane % 16) * kARow + ks + (lane / 16) * 8);
    uint32_t b[4][2];
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {  // two n8 tiles per load: (n 0-7: k 0-7, k 8-15), (n 8-15: k 0-7, k 8-15)
      const int n = warp_n * 32 + jj * 16 + (lane / 16) * 8, k = ks + ((lane / 8) % 2) * 8;
      uint32_t r[4];
      if constexpr (!backward)
        load_matrices<false>(r, b_tile + (n + lane % 8) * kForwardBRow + k);
      else
        load_matrices<true>(r, b_tile + (k + lane % 8) * kBackwardBRow + n);
      b[2 * jj][0] = r[0], b[2 * jj][1] = r[1], b[2 * jj + 1][0] = r[2], b[2 * jj + 1][1] = r[3];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) mma_16x8x16<T>(acc[i][j], a[i], b[j][0], b[j][1]);
  }
}

template <typename T, bool backward>
__global__ void __launch_bounds__(kThreads)
    matmul_4bit_kernel(const __grid_constant__ FourBitWeight w, const __grid_constant__ MapParam map_param,
                       const T* __restrict__ a, MatmulShape shape, T* __restrict__ c) {
  extern __shared__ __align__(128) uint8_t shared[];
  __shared__ float code[16];
  __shared__ float map[256];
  load_code_and_map(w, map_param, code, map);
  T* a_stages = reinterpret_cast<T*>(shared);
  uint8_t* packed_stages = shared + kStages * kAStageElements * sizeof(T);
  T* b_tiles = reinterpret_cast<T*>(packed_stages + kStages * kPackedTileBytes);

  const int64_t n0 = int64_t(blockIdx.x) * kTileN, m0 = int64_t(blockIdx.y) * kTileM;
  const int warp = threadIdx.x / 32, warp_m = warp / 4, warp_n = warp % 4;
  const int64_t k_tiles = (shape.k + kTileK - 1) / kTileK;
  auto a_stage = [&](int64_t kt) { return a_stages + (kt % kStages) * kAStageElements; };
  auto packed_stage = [&](int64_t kt) { return packed_stages + (kt % kStages) * kPackedTileBytes; };
  auto b_tile = [&](int64_t kt) { return b_tiles + (kt % 2) * kBTileElements; };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) copy_tile<T, backward>(w, a, shape, m0, n0, s, a_stage(s), packed_stage(s));
    commit_copies();  // a group per tile, empty past the end, so that the waits below count right
  }
  wait_copies<kStages - 2>();  // tile 0
  __syncthreads();
  dequantize_piece<T, backward>(w, packed_stage(0), code, piece_scale<backward>(w, map, n0, 0), n0, 0, b_tile(0));

  float acc[4][4][4] = {};
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    // Tile kt + 1 has arrived; after the barrier every warp is done with tile kt - 1 (its A stage, which the
    // copy below refills, and its B tile, which the dequantization below rewrites) and sees B tile kt.
    wait_copies<kStages - 3>();
    __syncthreads();
    const int64_t ahead = kt + kStages - 1;
    if (ahead < k_tiles) copy_tile<T, backward>(w, a, shape, m0, n0, ahead, a_stage(ahead), packed_stage(ahead));
    commit_copies();
    const bool next = kt + 1 < k_tiles;
    const float next_scale = next ? piece_scale<backward>(w, map, n0, kt + 1) : 0.0f;
    multiply_tile<T, backward>(a_stage(kt), b_tile(kt), warp_m, warp_n, acc);
    if (next) dequantize_piece<T, backward>(w, packed_stage(kt + 1), code, next_scale, n0, kt + 1, b_tile(kt + 1));
  }
  wait_copies<0>();  // no copy may still be writing shared memory when the block exits

  // D fragments: {row g, columns 2t, 2t + 1} and {row g + 8, the same columns}; shape.n is even, so a pair of
  // columns is stored whole or not at all.
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t col = n0 + warp_n * 32 + j * 8 + 2 * t;
      if (col >= shape.n) continue;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t row = m0 + warp_m * 64 + i * 16 + g + 8 * half;
        if (row < shape.m)
          *reinterpret_cast<uint32_t*>(c + row * shape.n + col) =
              pack_pair<T>(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
      }
    }
}

template <typename T, bool backward>
const char* launch_matmul(const FourBitWeight& w, const MapParam& map, const void* a, MatmulShape shape, void* c,
                          cudaStream_t stream) {
  constexpr size_t bytes = shared_bytes<T>();
  // Above 48 KiB a kernel must ask for its dynamic shared memory (once per kernel and device; cheap to repeat).
  if (cudaFuncSetAttribute(matmul_4bit_kernel<T, backward>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes)) != cudaSuccess)
    return launch_status();
  const dim3 grid(static_cast<unsigned>((shape.n + kTileN - 1) / kTileN),
                  static_cast<unsigned>((shape.m + kTileM - 1) / kTileM));
  matmul_4bit_kernel<T, backward><<<grid, kThreads, bytes, stream>>>(w, map, static_cast<const T*>(a), shape,
                                                                      static_cast<T*>(c));
  return launch_status();
}

}  // namespace

const char* matmul_4bit_unfit(const FourBitWeight& w, const void* a, const void* c, DType dtype) {
  if (dtype == DType::f32) return "it multiplies fp16 / bf16 only";
  if (w.cols % 32 != 0 || w.rows % 8 != 0) return "it needs the weight's columns a multiple of 32 and rows of 8";
  if (reinterpret_cast<uintptr_t>(w.packed) % 16 != 0 || reinterpret_cast<uintptr_t>(a) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(c) % 4 != 0)
    return "it needs the packed weight and the input 16-byte aligned, the output 4-byte aligned";
  if (!tensor_cores_available()) return "it needs a GPU of compute capability 8.0 or newer";
  return nullptr;
}

const char* matmul_4bit(const FourBitWeight& w, const DynamicMap* map, const void* a, int64_t m, void* c, DType dtype,
                        MatmulPass pass, void* stream) {
  if (const char* problem = check_weight(w, map)) return problem;
  if (m < 1) return "matmul_4bit: no rows";
  if ((m + kTileM - 1) / kTileM > 65535) return "matmul_4bit: more than 65535 tiles of 128 rows";
  if (const char* unfit = matmul_4bit_unfit(w, a, c, dtype)) {
    static thread_local std::string message;
    message = std::string("matmul_4bit: the kernel cannot take this weight: ") + unfit;
    return message.c_str();
  }
  const MapParam param = map_param_of(w, map);
  auto s = static_cast<cudaStream_t>(stream);
  const bool backward = pass == MatmulPass::backward;
  const MatmulShape shape = backward ? MatmulShape{m, w.cols, w.rows} : MatmulShape{m, w.rows, w.cols};
  if (dtype == DType::f16)
    return backward ? launch_matmul<__half, true>(w, param, a, shape, c, s)
                    : launch_matmul<__half, false>(w, param, a, shape, c, s);
  return backward ? launch_matmul<__nv_bfloat16, true>(w, param, a, shape, c, s)
                  : launch_matmul<__nv_bfloat16, false>(w, param, a, shape, c, s);
}

}  // namespace autotrain::cuda
