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
// A block computes a tile of C (256 x 128, 128 x 256, 128 x 128, 64 x 128 or 64 x 64: Tiling below) with 4 or 8
// warps, each a 32 x 32 to 64 x 64 part of it in m16n8k16 MMAs, and walks k in tiles of 32. Per k tile: the A tile
// (TileM x 32) and the packed weight tile (TileN x 32 values) are copied with cp.async, Stages - 1 tiles ahead;
// the packed tile is then dequantized into one of two dense tiles of shared memory while the warps multiply the
// other one:
//   wait for tile t + 1; __syncthreads; start copying tile t + Stages - 1; MMA on tile t; dequantize tile t + 1.
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

constexpr int kTileK = 32;  // columns of A (rows of B) per k tile
constexpr int kPad = 8;     // elements of padding per shared row (16 bytes)

// A block's tile of C (TileM x TileN) and its warps (WarpsM x WarpsN, each a (TileM / WarpsM) x (TileN / WarpsN)
// part of C in m16n8 MMA tiles), with the shared memory they need.
template <int TileM, int TileN, int WarpsM, int WarpsN, int Stages = 4>
struct Tiling {
  static constexpr int kTileM = TileM, kTileN = TileN;
  static constexpr int kStages = Stages;  // k tiles of A and of the packed weight in shared memory
  static constexpr int kWarpsN = WarpsN;
  static constexpr int kThreads = 32 * WarpsM * WarpsN;
  static constexpr int kWarpM = TileM / WarpsM, kWarpN = TileN / WarpsN;
  static constexpr int kMmaM = kWarpM / 16, kMmaN = kWarpN / 8;
  static constexpr int kARow = kTileK + kPad;          // A tile [m][k]
  static constexpr int kForwardBRow = kTileK + kPad;   // forward B tile [n][k]
  static constexpr int kBackwardBRow = TileN + kPad;   // backward B tile [k][n]
  static constexpr int kPackedTileBytes = TileN * kTileK / 2;
  static constexpr int kPieces = TileN * kTileK / 16;  // pieces of 8 packed bytes (16 values) per k tile
  static constexpr int kPiecesPerThread = kPieces / kThreads;
  static constexpr int kAStageElements = TileM * kARow;
  static constexpr int kBTileElements =
      TileN * kForwardBRow > kTileK * kBackwardBRow ? TileN * kForwardBRow : kTileK * kBackwardBRow;
  static_assert(Stages >= 3, "the loop waits for tile kt + 1 while tile kt + Stages - 1 is copied");
  static_assert(kWarpM % 16 == 0 && kWarpN % 16 == 0, "B fragments are loaded two n8 tiles at a time");
  static_assert(kPieces % kThreads == 0, "each thread dequantizes whole pieces");
  static_assert(TileM * kTileK / 8 % kThreads == 0, "each thread copies whole 16-byte pieces of A");
  static_assert(kPackedTileBytes / 16 % kThreads == 0 || kThreads % (kPackedTileBytes / 16) == 0,
                "the packed tile's 16-byte pieces spread evenly over the threads");

  template <typename T>
  static constexpr size_t shared_bytes() {
    return Stages * (kAStageElements * sizeof(T) + kPackedTileBytes) + 2 * kBTileElements * sizeof(T);
  }
};

// ---- PTX wrappers (sm_80+; the launcher refuses older devices) -------------------------------------------

// Four 8 x 8 matrices of 16-bit values; lane l gives the address of row l % 8 of matrix l / 8.
template <bool transposed>
__device__ __forceinline__ void load_matrices(uint32_t (&r)[4], const void* row) {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::load_matrices(r, row, transposed);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
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
//
// Each thread copies and dequantizes the same few pieces of every k tile, one k tile further along each time: where
// they lie at k tile 0 is worked out once, before the loop (with 64-bit index arithmetic and divisions), and the
// loop only adds a step. (An earlier version recomputed it all per tile: ~400 instructions per 32 MMAs in the
// 128 x 128 loop's SASS, against ~260 now.)

struct MatmulShape {
  int64_t m = 0, n = 0, k = 0;  // C (m, n) = A (m, k) . B (k, n)
};

// The product of m rows of A with the weight: forward x (m, cols) -> y (m, rows), backward dy (m, rows) -> dx
// (m, cols).
MatmulShape matmul_shape(const FourBitWeight& w, int64_t m, MatmulPass pass) {
  return pass == MatmulPass::backward ? MatmulShape{m, w.cols, w.rows} : MatmulShape{m, w.rows, w.cols};
}

// A piece of the weight's k tiles that a thread walks: 16 values of one row (a dequantization piece) or 32 (a
// 16-byte piece of the packed copy, which holds dequantization pieces 2q and 2q + 1, adjacent in the weight as a
// row of a tile has an even number of them). Forward, a k tile of the weight is its rows n0 .. n0 + TileN - 1 x
// columns kt * 32 .. + 31 (2 dequantization pieces per row); backward, rows kt * 32 .. + 31 x columns n0 ..
// n0 + TileN - 1 (TileN / 16 per row). A piece that hangs over the weight's last row or column does not exist:
// it is read as zeros (multiplying zeros of A, or giving columns of C that are never stored).
struct WeightPiece {
  int tile_row = 0, tile_col = 0;  // in the B tile, in the pass's layout (see the file comment)
  uint32_t first = 0;              // flat index of its first value at k tile 0 (indexes_fit_31_bits)
  bool fixed_part_exists = false;  // its row (forward) or column (backward) is in the weight
};

template <typename Tile, bool backward>
__device__ __forceinline__ WeightPiece weight_piece(const FourBitWeight& w, int piece, int64_t n0) {
  constexpr int per_row = backward ? Tile::kTileN / 16 : kTileK / 16;
  WeightPiece p;
  p.tile_row = piece / per_row;
  p.tile_col = (piece % per_row) * 16;
  const int64_t row = backward ? p.tile_row : n0 + p.tile_row, col = backward ? n0 + p.tile_col : p.tile_col;
  p.fixed_part_exists = backward ? col < w.cols : row < w.rows;
  p.first = p.fixed_part_exists ? static_cast<uint32_t>(row * w.cols + col) : 0;
  return p;
}

// Whether the piece exists at k tile kt (forward, its columns always do: cols is a multiple of 32), and its flat
// index there, in 32 bits: 64-bit index arithmetic was a good part of the loop's instructions (SASS).
template <bool backward>
__device__ __forceinline__ bool piece_exists(const FourBitWeight& w, const WeightPiece& p, int kt) {
  return p.fixed_part_exists && (!backward || kt * kTileK + p.tile_row < w.rows);
}
template <bool backward>
__device__ __forceinline__ uint32_t piece_at(const FourBitWeight& w, const WeightPiece& p, int kt) {
  return p.first + static_cast<uint32_t>(kt) * (backward ? kTileK * static_cast<uint32_t>(w.cols) : kTileK);
}

// A piece of A that a thread copies: 8 values of one row, kt * 32 + col in that row at k tile kt.
template <typename T>
struct APiece {
  const T* first = nullptr;  // at k tile 0 (A itself where the row does not exist)
  int shared_offset = 0;     // in the A stage, elements
  int col = 0;
  bool row_exists = false;
};

// Everything a thread copies and dequantizes, per k tile.
template <typename Tile, typename T>
struct ThreadPieces {
  static constexpr int kA = Tile::kTileM * kTileK / 8 / Tile::kThreads;
  static constexpr int kPacked = (Tile::kPackedTileBytes / 16 + Tile::kThreads - 1) / Tile::kThreads;
  APiece<T> a[kA];
  WeightPiece packed[kPacked];  // piece q = threadIdx.x + i * kThreads, when q < the tile's pieces
  WeightPiece dequantized[Tile::kPiecesPerThread];
};

template <typename Tile, typename T, bool backward>
__device__ __forceinline__ ThreadPieces<Tile, T> thread_pieces(const FourBitWeight& w, const T* a, MatmulShape shape,
                                                               int64_t m0, int64_t n0) {
  ThreadPieces<Tile, T> t;
#pragma unroll
  for (int i = 0; i < t.kA; ++i) {
    const int piece = threadIdx.x + i * Tile::kThreads;
    const int r = piece / (kTileK / 8), c = (piece % (kTileK / 8)) * 8;
    t.a[i].row_exists = m0 + r < shape.m;
    t.a[i].first = t.a[i].row_exists ? a + (m0 + r) * shape.k + c : a;
    t.a[i].shared_offset = r * Tile::kARow + c;
    t.a[i].col = c;
  }
#pragma unroll
  for (int i = 0; i < t.kPacked; ++i)
    t.packed[i] = weight_piece<Tile, backward>(w, 2 * (threadIdx.x + i * Tile::kThreads), n0);
#pragma unroll
  for (int i = 0; i < Tile::kPiecesPerThread; ++i)
    t.dequantized[i] = weight_piece<Tile, backward>(w, threadIdx.x + i * Tile::kThreads, n0);
  return t;
}

// Copies k tile `kt` of A and of the packed weight into their stages (zeros for what does not exist; shape.k is a
// multiple of 8, so a piece of A exists whole or not at all).
template <typename Tile, typename T, bool backward>
__device__ __forceinline__ void copy_tile(const FourBitWeight& w, const ThreadPieces<Tile, T>& t, MatmulShape shape,
                                          int kt, T* a_stage, uint8_t* packed_stage) {
#pragma unroll
  for (int i = 0; i < t.kA; ++i) {
    const bool exists = t.a[i].row_exists && kt * kTileK + t.a[i].col < shape.k;
    copy16_async(a_stage + t.a[i].shared_offset, exists ? t.a[i].first + kt * kTileK : t.a[i].first, exists);
  }
#pragma unroll
  for (int i = 0; i < t.kPacked; ++i) {
    const int q = threadIdx.x + i * Tile::kThreads;
    if (q >= Tile::kPackedTileBytes / 16) break;
    const bool exists = piece_exists<backward>(w, t.packed[i], kt);
    copy16_async(packed_stage + 16 * q, w.packed + (exists ? piece_at<backward>(w, t.packed[i], kt) / 2 : 0), exists);
  }
}

// The statistics of this thread's dequantization pieces of k tile `kt`, read now and made scales in
// dequantize_pieces (after the MMAs of the tile before: see BlockStats); pieces that do not exist get scale 0.
template <typename Tile>
struct PieceStats {
  BlockStats stats[Tile::kPiecesPerThread];
  bool exists[Tile::kPiecesPerThread];
};

template <typename Tile, typename T, bool backward>
__device__ __forceinline__ void load_piece_stats(const FourBitWeight& w, const ThreadPieces<Tile, T>& t, int kt,
                                                 int block_shift, PieceStats<Tile>& s) {
#pragma unroll
  for (int i = 0; i < Tile::kPiecesPerThread; ++i) {
    s.exists[i] = piece_exists<backward>(w, t.dequantized[i], kt);
    if (s.exists[i]) s.stats[i] = load_block_stats(w, piece_at<backward>(w, t.dequantized[i], kt) >> block_shift);
  }
}

// The 16 values of 8 packed bytes (one scale), each code * scale rounded to T, as 8 pairs (the first value low).
template <typename T>
__device__ __forceinline__ void decode16(uint2 bytes, uint32_t code_address, float scale, uint32_t (&pairs)[8]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const uint32_t word = half == 0 ? bytes.x : bytes.y;
    const uint32_t high = nibble_offsets(word, true), low = nibble_offsets(word, false);
#pragma unroll
    for (int k = 0; k < 4; ++k)  // byte k: its high nibble is the first value
      pairs[4 * half + k] = pack_pair<T>(__fmul_rn(load_shared(code_entry(high, code_address, k)), scale),
                                         __fmul_rn(load_shared(code_entry(low, code_address, k)), scale));
  }
}

// This thread's pieces of the packed stage into dense values of the B tile, each code * scale rounded to T.
template <typename Tile, typename T, bool backward>
__device__ __forceinline__ void dequantize_pieces(const FourBitWeight& w, const ThreadPieces<Tile, T>& t,
                                                  const uint8_t* packed_stage, uint32_t code_address,
                                                  const float* map, const PieceStats<Tile>& s, T* b_tile) {
  constexpr int row_elements = backward ? Tile::kBackwardBRow : Tile::kForwardBRow;
#pragma unroll
  for (int i = 0; i < Tile::kPiecesPerThread; ++i) {
    const int piece = threadIdx.x + i * Tile::kThreads;
    const float scale = s.exists[i] ? scale_of(w, map, s.stats[i]) : 0.0f;
    uint32_t pairs[8];
    decode16<T>(*reinterpret_cast<const uint2*>(packed_stage + 8 * piece), code_address, scale, pairs);
    const WeightPiece& p = t.dequantized[i];
    uint4* dst = reinterpret_cast<uint4*>(b_tile + p.tile_row * row_elements + p.tile_col);
    dst[0] = make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
    dst[1] = make_uint4(pairs[4], pairs[5], pairs[6], pairs[7]);
  }
}

// One k tile (two k steps of 16) of the warp's part of C.
template <typename Tile, typename T, bool backward>
__device__ __forceinline__ void multiply_tile(const T* a_stage, const T* b_tile, int warp_m, int warp_n,
                                              float (&acc)[Tile::kMmaM][Tile::kMmaN][4]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int ks = 0; ks < kTileK; ks += 16) {
    uint32_t a[Tile::kMmaM][4];
#pragma unroll
    for (int i = 0; i < Tile::kMmaM; ++i)  // matrices: rows 0-7 / 8-15 x columns 0-7, then the same x columns 8-15
      load_matrices<false>(a[i], a_stage + (warp_m * Tile::kWarpM + i * 16 + lane % 16) * Tile::kARow + ks +
                                     (lane / 16) * 8);
    uint32_t b[Tile::kMmaN][2];
#pragma unroll
    for (int jj = 0; jj < Tile::kMmaN / 2; ++jj) {  // two n8 tiles per load: (n 0-7: k 0-7, 8-15), (n 8-15: ...)
      const int n = warp_n * Tile::kWarpN + jj * 16 + (lane / 16) * 8, k = ks + ((lane / 8) % 2) * 8;
      uint32_t r[4];
      if constexpr (!backward)
        load_matrices<false>(r, b_tile + (n + lane % 8) * Tile::kForwardBRow + k);
      else
        load_matrices<true>(r, b_tile + (k + lane % 8) * Tile::kBackwardBRow + n);
      b[2 * jj][0] = r[0], b[2 * jj][1] = r[1], b[2 * jj + 1][0] = r[2], b[2 * jj + 1][1] = r[3];
    }
#pragma unroll
    for (int i = 0; i < Tile::kMmaM; ++i)
#pragma unroll
      for (int j = 0; j < Tile::kMmaN; ++j) mma_16x8x16<T>(acc[i][j], a[i], b[j][0], b[j][1]);
  }
}

template <typename Tile, typename T, bool backward>
__global__ void __launch_bounds__(Tile::kThreads)
    matmul_4bit_kernel(const __grid_constant__ FourBitWeight w, const __grid_constant__ MapParam map_param,
                       const T* __restrict__ a, MatmulShape shape, T* __restrict__ c) {
  AUTOTRAIN_DYNAMIC_SHARED(uint8_t, shared);
  __shared__ __align__(256) float code[16];  // for code_entry
  __shared__ float map[256];
  load_code_and_map(w, map_param, code, map);
  const uint32_t code_address = code_address_of(code);
  T* a_stages = reinterpret_cast<T*>(shared);
  uint8_t* packed_stages = shared + Tile::kStages * Tile::kAStageElements * sizeof(T);
  T* b_tiles = reinterpret_cast<T*>(packed_stages + Tile::kStages * Tile::kPackedTileBytes);

  const int64_t n0 = int64_t(blockIdx.x) * Tile::kTileN, m0 = int64_t(blockIdx.y) * Tile::kTileM;
  const int warp = threadIdx.x / 32, warp_m = warp / Tile::kWarpsN, warp_n = warp % Tile::kWarpsN;
  const int k_tiles = static_cast<int>((shape.k + kTileK - 1) / kTileK);
  const int block_shift = __ffs(w.blocksize) - 1;
  const ThreadPieces<Tile, T> pieces = thread_pieces<Tile, T, backward>(w, a, shape, m0, n0);
  auto a_stage = [&](int kt) { return a_stages + (kt % Tile::kStages) * Tile::kAStageElements; };
  auto packed_stage = [&](int kt) { return packed_stages + (kt % Tile::kStages) * Tile::kPackedTileBytes; };
  auto b_tile = [&](int kt) { return b_tiles + (kt % 2) * Tile::kBTileElements; };

#pragma unroll
  for (int s = 0; s < Tile::kStages - 1; ++s) {
    if (s < k_tiles) copy_tile<Tile, T, backward>(w, pieces, shape, s, a_stage(s), packed_stage(s));
    commit_copies();  // a group per tile, empty past the end, so that the waits below count right
  }
  PieceStats<Tile> stats;
  load_piece_stats<Tile, T, backward>(w, pieces, 0, block_shift, stats);
  wait_copies<Tile::kStages - 2>();  // tile 0
  __syncthreads();
  dequantize_pieces<Tile, T, backward>(w, pieces, packed_stage(0), code_address, map, stats, b_tile(0));

  float acc[Tile::kMmaM][Tile::kMmaN][4] = {};
  for (int kt = 0; kt < k_tiles; ++kt) {
    // Tile kt + 1 has arrived; after the barrier every warp is done with tile kt - 1 (its A stage, which the
    // copy below refills, and its B tile, which the dequantization below rewrites) and sees B tile kt.
    wait_copies<Tile::kStages - 3>();
    __syncthreads();
    const int ahead = kt + Tile::kStages - 1;
    if (ahead < k_tiles) copy_tile<Tile, T, backward>(w, pieces, shape, ahead, a_stage(ahead), packed_stage(ahead));
    commit_copies();
    const bool next = kt + 1 < k_tiles;
    if (next) load_piece_stats<Tile, T, backward>(w, pieces, kt + 1, block_shift, stats);  // used after the MMAs
    multiply_tile<Tile, T, backward>(a_stage(kt), b_tile(kt), warp_m, warp_n, acc);
    if (next)
      dequantize_pieces<Tile, T, backward>(w, pieces, packed_stage(kt + 1), code_address, map, stats, b_tile(kt + 1));
  }
  wait_copies<0>();  // no copy may still be writing shared memory when the block exits

  // D fragments: {row g, columns 2t, 2t + 1} and {row g + 8, the same columns}; shape.n is even, so a pair of
  // columns is stored whole or not at all.
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < Tile::kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < Tile::kMmaN; ++j) {
      const int64_t col = n0 + warp_n * Tile::kWarpN + j * 8 + 2 * t;
      if (col >= shape.n) continue;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int64_t row = m0 + warp_m * Tile::kWarpM + i * 16 + g + 8 * half;
        if (row < shape.m)
          *reinterpret_cast<uint32_t*>(c + row * shape.n + col) =
              pack_pair<T>(acc[i][j][2 * half], acc[i][j][2 * half + 1]);
      }
    }
}

// Launches a matmul kernel of `Tile`'s blocks (kThreads threads, a kTileM x kTileN tile of C each) over C.
template <typename Tile, typename T>
const char* launch_over_tiles(void (*kernel)(FourBitWeight, MapParam, const T*, MatmulShape, T*), size_t bytes,
                              const FourBitWeight& w, const MapParam& map, const void* a, MatmulShape shape, void* c,
                              cudaStream_t stream) {
  // Above 48 KiB a kernel must ask for its dynamic shared memory (once per kernel and device; cheap to repeat).
  if (cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes)) != cudaSuccess)
    return launch_status();
  const dim3 grid(static_cast<unsigned>((shape.n + Tile::kTileN - 1) / Tile::kTileN),
                  static_cast<unsigned>((shape.m + Tile::kTileM - 1) / Tile::kTileM));
  launch_kernel(kernel, grid, Tile::kThreads, bytes, stream, w, map, static_cast<const T*>(a), shape,
                static_cast<T*>(c));
  return launch_status();
}

template <typename Tile, typename T, bool backward>
const char* launch_matmul(const FourBitWeight& w, const MapParam& map, const void* a, MatmulShape shape, void* c,
                          cudaStream_t stream) {
  return launch_over_tiles<Tile, T>(matmul_4bit_kernel<Tile, T, backward>, Tile::template shared_bytes<T>(), w, map,
                                    a, shape, c, stream);
}

// ---- the Hopper kernel (sm_90a): warpgroup MMAs ------------------------------------------------------------
//
// The same product with Hopper's asynchronous warpgroup MMA (wgmma.mma_async, sm_90a only), which reads both
// operands from shared memory: the instruction cuBLAS runs on an H100, where the mma.sync kernel above reaches only
// 0.19-0.35 of cuBLAS's throughput. A slice of 8 warps (two warpgroups) computes a 128 x TileN tile of C (TileN 128,
// or 64 for twice the blocks), each warpgroup 64 rows of it with one m64nTileNk16 per k step of 16, and walks k in
// tiles of 64 (one 128-byte row of fp16 / bf16). A block is one slice, or two that split k between them
// (WgmmaBlock): the tilings for shapes with few tiles of 128 x 128 (Llama's k/v projections forward at 2048 tokens:
// 128 for 132 SMs). A slice's steps:
//   wait for tile t + 1; the slice's barrier; start copying tile t + Stages - 1 and loading tile t + 2's statistics;
//   issue the 4 wgmmas of tile t; dequantize tile t + 1 (scales from shared memory) while the tensor cores work;
//   store tile t + 2's scales; wait for the wgmmas (t counting this slice's tiles).
// Both operands are K-major with the 128-byte swizzle (the layout wgmma reads fastest): A (x or dy) arrives there by
// cp.async; the weight, K-major in both passes (rows of B are output columns: weight rows forward, weight columns
// backward), is dequantized into it, each value exactly dequantize_4bit's. Shared memory written by threads must be
// made visible to the wgmma's asynchronous reads (fence.proxy.async) before the barrier that precedes them.
//
// tests/simt emulates wgmma (K-major, 128-byte swizzle) and runs this kernel on the CPU; the build must include
// sm_90a code (CMAKE_CUDA_ARCHITECTURES 90a-real, the default) and matmul_4bit_wgmma_available() checks at run time
// that the GPU runs it.

#if defined(AUTOTRAIN_SIMT_EMULATION) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define AUTOTRAIN_HAS_WGMMA 1
#endif

template <int TileN>
struct WgmmaTiling {
  static_assert(TileN == 128 || TileN == 64, "the wgmma shapes wrapped below");
  static constexpr int kTileM = 128, kTileN = TileN, kTileK = 64, kStages = 3, kThreads = 256;
  static constexpr int kRowBytes = kTileK * 2;                  // a swizzled row: 64 values
  static constexpr int kATileBytes = kTileM * kRowBytes;        // 16 KiB
  static constexpr int kBTileBytes = kTileN * kRowBytes;        // 16 / 8 KiB
  static constexpr int kPackedTileBytes = kTileN * kTileK / 2;  // 4 / 2 KiB
  static constexpr int kAChunks = kTileM * kTileK / 8 / kThreads;  // 16-byte chunks of A per thread and k tile
  static constexpr int kPackedChunks = kPackedTileBytes / 16;   // one per thread of the first kPackedChunks
  static constexpr int kPieces = kTileN * kTileK / 16 / kThreads;  // forward dequantization pieces per thread
  static constexpr int kPatchWarps = kTileN / 16;  // backward: the warps that dequantize (4 columns per lane)
  static constexpr int kAccumulators = kTileN / 2;  // per thread: 64 x TileN fp32 over a warpgroup
  // A slice's tiles (92 / 70 KiB, a multiple of 1024 bytes: each slice's start stays 1024-byte aligned).
  static constexpr size_t kSliceBytes = kStages * (kATileBytes + kPackedTileBytes) + 2 * kBTileBytes;
};

// A block of `Slices` slices, each two warpgroups (kThreads of WgmmaTiling) with tiles of its own in shared memory.
// A block of one slice walks every k tile. Two slices split k: slice s takes k tiles s, s + 2, s + 4, ... (both take
// as many, a tile past the end being zeros), each at a barrier of its own (sync_slice), and slice 1 hands its sums
// to slice 0 through shared memory at the end. Split k gives an SM 16 warps on one tile of C (twice the warps to
// overlap the dequantization, barriers and MMAs) without halving the tile, which would double the A copies and the
// fixed work per product: for shapes with about one tile of 128 x 128 per SM (Llama's k/v projections forward at
// 2048 tokens: 128 tiles for 132 SMs).
template <int TileN, int Slices>
struct WgmmaBlock {
  static_assert(Slices == 1 || Slices == 2, "one slice, or two splitting k");
  static constexpr int kTileM = WgmmaTiling<TileN>::kTileM, kTileN = TileN;
  static constexpr int kThreads = Slices * WgmmaTiling<TileN>::kThreads;
  // 1 KiB more than the tiles take: their start is aligned up to 1024 bytes of shared address (the swizzle is a
  // function of the address bits). 93 / 71 KiB for one slice, 185 KiB for two of 128 x 128, and 3-5 KiB of static
  // shared memory: two / three blocks of one slice fit an SM, one of two.
  static constexpr size_t kSharedBytes = 1024 + Slices * WgmmaTiling<TileN>::kSliceBytes;
  // The blocks an SM holds by registers too (__launch_bounds__: at most 128 / 85 registers a thread). Three of
  // 128 x 64 forward (80 registers, no spills, SASS sm_90a); two of one slice otherwise (128 x 64 backward needs
  // 116); one of two slices (512 threads of at most 128 registers; 128 x 128 uses 128).
  static constexpr int blocks_per_sm(bool backward) { return Slices == 2 ? 1 : TileN == 64 && !backward ? 3 : 2; }
};

// Where 16-byte chunk `chunk` (0-7) of row `row` lies in a tile of 128-byte rows with the 128-byte swizzle.
__device__ __forceinline__ uint32_t swizzled(int row, int chunk) {
  return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// The descriptor of a K-major operand with the 128-byte swizzle starting at shared address `address`: groups of 8
// rows 1024 bytes apart; the leading-dimension offset is unused in this layout (1 by convention).
__device__ __forceinline__ uint64_t swizzled_descriptor(uint32_t address) {
  return uint64_t((address & 0x3FFFF) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

// The barrier of a slice's 256 threads (WgmmaBlock): the block's own where it is one slice, else named barrier
// 1 + slice (bar.sync), so that two slices splitting k wait only for themselves and drift apart, one's MMAs running
// while the other is at its barrier, copies and scales.
template <int Slices>
__device__ __forceinline__ void sync_slice(int slice) {
  if constexpr (Slices == 1) {
    __syncthreads();
  } else {
#if defined(AUTOTRAIN_SIMT_EMULATION)
    ::autotrain::simt::sync_named(1 + slice, 256);
#else
    asm volatile("bar.sync %0, 256;\n" ::"r"(1 + slice) : "memory");
#endif
  }
}

// Shared memory written by this thread (st.shared, cp.async) is seen by later wgmma reads (the async proxy).
__device__ __forceinline__ void fence_shared_for_wgmma() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(AUTOTRAIN_SIMT_EMULATION)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(AUTOTRAIN_SIMT_EMULATION)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::wgmma_commit();
#elif defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

template <int pending>
__device__ __forceinline__ void wgmma_wait() {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::wgmma_wait(pending);
#elif defined(__CUDA_ARCH_FEAT_SM90_ALL)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(pending) : "memory");
#endif
}

// Keeps the compiler from moving reads or writes of the accumulators across a wgmma issue or wait (the asm of a
// wait names no registers).
template <int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[N]) {
#if !defined(AUTOTRAIN_SIMT_EMULATION)
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
#else
  (void)d;
#endif
}

#define AUTOTRAIN_WGMMA_M64N128K16(kind)                                                                     \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                 \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." kind "." kind " {"                           \
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                     \
               "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"                           \
               "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"                           \
               "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63},"                          \
               " %64, %65, p, 1, 1, 0, 0;\n}\n"                                                             \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
                 "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
                 "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
                 "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
                 "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
                 "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
                 "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
                 "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
                 "+f"(d[63])                                                                                \
               : "l"(a), "l"(b), "r"(1))

#define AUTOTRAIN_WGMMA_M64N64K16(kind)                                                                      \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                 \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." kind "." kind " {"                            \
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"                                     \
               "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31},"                          \
               " %32, %33, p, 1, 1, 0, 0;\n}\n"                                                             \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
                 "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
                 "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
                 "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
                 "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])                                         \
               : "l"(a), "l"(b), "r"(1))

// d (64 x N of this warpgroup, fp32) += A (64 x 16) . B^T (B: N x 16), both K-major in shared memory.
template <typename T, int N>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[N / 2], uint64_t a, uint64_t b) {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::wgmma_m64k16(d, N, a, b, std::is_same_v<T, __nv_bfloat16>);
#elif defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool kHalf = std::is_same_v<T, __half>;
  if constexpr (N == 128 && kHalf)
    AUTOTRAIN_WGMMA_M64N128K16("f16");
  else if constexpr (N == 128)
    AUTOTRAIN_WGMMA_M64N128K16("bf16");
  else if constexpr (kHalf)
    AUTOTRAIN_WGMMA_M64N64K16("f16");
  else
    AUTOTRAIN_WGMMA_M64N64K16("bf16");
#else
  (void)d, (void)a, (void)b;
  __trap();  // the launcher never starts this kernel without sm_90a code (matmul_4bit_wgmma_available)
#endif
}
#undef AUTOTRAIN_WGMMA_M64N128K16
#undef AUTOTRAIN_WGMMA_M64N64K16

// What a thread copies and dequantizes per k tile, worked out once before the loop (as ThreadPieces above).
//   t below is the thread's index in its slice of the block (WgmmaBlock).
//   A: kAChunks (4) chunks of 16 bytes (8 values of a row of A); chunk q = t + 256 i is row q / 8, chunk q % 8.
//   The packed weight: 1 chunk of 16 bytes (threads below kPackedChunks). Forward, the tile is weight rows n0 .. n0
//   + TileN - 1 x 64 columns (32 bytes a row, plain); backward, weight rows kt * 64 .. + 63 x columns n0 .. n0 +
//   TileN - 1 (TileN / 2 bytes a row, its chunks permuted by the row's group of 8 so that the reads below spread
//   over more banks).
//   Dequantization. Forward: kPieces pieces of 16 values of one weight row (8 packed bytes, one scale), piece
//   p = t + 256 i is B row p / 4 (a weight row), values 16 (p % 4) ... + 15 of the k tile. Backward (warps
//   below kPatchWarps): a patch of 8 weight rows (the k tile's rows 8 kg ... 8 kg + 7) x 4 columns (B rows 4 cq ...
//   4 cq + 3), kg = lane % 8 and cq = lane / 8 + 4 warp: each of its 4 B rows gets one 16-byte chunk, and the 8
//   lanes that store at once write 8 different chunks (no bank conflicts).
template <typename T, int TileN>
struct WgmmaPieces {
  static constexpr int kA = WgmmaTiling<TileN>::kAChunks;
  const T* a_first[kA];  // at k tile 0 (A itself where the row does not exist)
  uint32_t a_offset[kA];
  int a_col[kA];
  bool a_row[kA];
  uint32_t packed_first;  // its flat value index at k tile 0
  uint32_t packed_offset;
  int packed_k;       // how far into the k tile it lies: forward its first column, backward its row
  bool packed_fixed;  // forward: its row exists; backward: its columns do
};

template <typename T, int TileN, bool backward>
__device__ __forceinline__ WgmmaPieces<T, TileN> wgmma_pieces(const FourBitWeight& w, const T* a, MatmulShape shape,
                                                              int64_t m0, int64_t n0, int tid) {
  using W = WgmmaTiling<TileN>;
  WgmmaPieces<T, TileN> p{};
#pragma unroll
  for (int i = 0; i < W::kAChunks; ++i) {
    const int q = tid + W::kThreads * i, r = q / 8, chunk = q % 8;
    p.a_row[i] = m0 + r < shape.m;
    p.a_first[i] = p.a_row[i] ? a + (m0 + r) * shape.k + chunk * 8 : a;
    p.a_offset[i] = swizzled(r, chunk);
    p.a_col[i] = chunk * 8;
  }
  if constexpr (!backward) {
    const int r = tid / 2, half = tid % 2;
    p.packed_fixed = n0 + r < w.rows;  // (threads past kPackedChunks copy none: wgmma_copy_tile)
    p.packed_first = p.packed_fixed ? static_cast<uint32_t>((n0 + r) * w.cols + 32 * half) : 0;
    p.packed_offset = static_cast<uint32_t>(r * 32 + 16 * half);
    p.packed_k = 32 * half;
  } else {
    constexpr int kChunks = TileN / 32;  // per row of the packed tile
    const int r = tid / kChunks, chunk = tid % kChunks;
    p.packed_fixed = n0 + 32 * chunk < w.cols;
    p.packed_first = p.packed_fixed ? static_cast<uint32_t>(r * w.cols + n0 + 32 * chunk) : 0;
    p.packed_offset = static_cast<uint32_t>(r * (TileN / 2) + ((chunk ^ ((r / 8) & (kChunks - 1))) << 4));
    p.packed_k = r;
  }
  return p;
}

// Copies k tile `kt` of A and of the packed weight (zeros for what does not exist: shape.k is a multiple of 8 and
// a packed chunk is 32 values of one row, inside the weight's columns or past them whole).
template <typename T, int TileN, bool backward>
__device__ __forceinline__ void wgmma_copy_tile(const FourBitWeight& w, const WgmmaPieces<T, TileN>& p, const T* a,
                                                MatmulShape shape, int kt, uint8_t* a_tile, uint8_t* packed_tile,
                                                int thread) {
  constexpr int kTileK = WgmmaTiling<TileN>::kTileK;
#pragma unroll
  for (int i = 0; i < WgmmaTiling<TileN>::kAChunks; ++i) {
    const bool exists = p.a_row[i] && kt * kTileK + p.a_col[i] < static_cast<int>(shape.k);
    copy16_async(a_tile + p.a_offset[i], exists ? p.a_first[i] + kt * kTileK : a, exists);
  }
  if (thread >= WgmmaTiling<TileN>::kPackedChunks) return;
  const bool exists = p.packed_fixed && kt * kTileK + p.packed_k < static_cast<int>(backward ? w.rows : w.cols);
  const uint32_t step = backward ? static_cast<uint32_t>(kTileK) * static_cast<uint32_t>(w.cols) : kTileK;
  copy16_async(packed_tile + p.packed_offset,
               w.packed + (exists ? (p.packed_first + static_cast<uint32_t>(kt) * step) / 2 : 0), exists);
}

// The scales of a k tile's values in shared memory, one per 32 columns of a row: such a group lies in one block
// (the weight's columns are a multiple of 32 and blocks are whole multiples of 32 values; a block may run from one
// row into the next), and is wholly in the weight or wholly out of it (scale 0). A row of the tile (a weight row
// forward, of the tile's 64 columns; backward, of the block's TileN columns) has kGroups of them, and thread q
// gives row q / kGroups's (q % kGroups)-th. Its statistics are loaded a whole iteration before the scale is stored
// (wgmma_store_scale) and two before it is used, so that the loads' latency hides behind the MMAs.
template <int TileN, bool backward>
struct WgmmaScales {
  static constexpr int kGroups = (backward ? TileN : WgmmaTiling<TileN>::kTileK) / 32;  // per row of the tile
  static constexpr int kRows = backward ? WgmmaTiling<TileN>::kTileK : TileN;
  static_assert(kRows * kGroups <= WgmmaTiling<TileN>::kThreads, "one scale per thread");
};

struct WgmmaScale {
  BlockStats stats;
  bool exists = false;
};

template <int TileN, bool backward>
__device__ __forceinline__ WgmmaScale wgmma_load_scale(const FourBitWeight& w, int64_t n0, int kt, int block_shift,
                                                       int thread) {
  using S = WgmmaScales<TileN, backward>;
  constexpr int kTileK = WgmmaTiling<TileN>::kTileK;
  WgmmaScale s;
  const int q = thread;
  if (q >= S::kRows * S::kGroups) return s;
  const int r = q / S::kGroups, group = q % S::kGroups;
  const int row = backward ? kt * kTileK + r : static_cast<int>(n0) + r;
  const int col = (backward ? static_cast<int>(n0) : kt * kTileK) + 32 * group;
  s.exists = row < static_cast<int>(w.rows) && col < static_cast<int>(w.cols);  // 32-bit: indexes_fit_31_bits
  if (s.exists)
    s.stats = load_block_stats(
        w, (static_cast<uint32_t>(row) * static_cast<uint32_t>(w.cols) + static_cast<uint32_t>(col)) >> block_shift);
  return s;
}

// Every thread of a slice stores one (the slice's kThreads slots; those past the tile's groups get an unread 0).
__device__ __forceinline__ void wgmma_store_scale(const FourBitWeight& w, const float* map, const WgmmaScale& s,
                                                  float* scales, int thread) {
  scales[thread] = s.exists ? scale_of(w, map, s.stats) : 0.0f;
}

// This thread's values of the packed k tile into the B tile (K-major, swizzled), each code * scale rounded to T.
template <typename T, int TileN, bool backward>
__device__ __forceinline__ void wgmma_dequantize(const uint8_t* packed_tile, uint32_t code_address, const float* scales,
                                                 uint8_t* b_tile, int thread) {
  using W = WgmmaTiling<TileN>;
  constexpr int kGroups = WgmmaScales<TileN, backward>::kGroups;
  if constexpr (!backward) {
#pragma unroll
    for (int i = 0; i < W::kPieces; ++i) {
      const int piece = thread + W::kThreads * i, row = piece / 4, part = piece % 4;
      const float scale = scales[row * kGroups + part / 2];
      uint32_t pairs[8];
      decode16<T>(*reinterpret_cast<const uint2*>(packed_tile + 32 * row + 8 * part), code_address, scale, pairs);
      *reinterpret_cast<uint4*>(b_tile + swizzled(row, 2 * part)) = make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
      *reinterpret_cast<uint4*>(b_tile + swizzled(row, 2 * part + 1)) =
          make_uint4(pairs[4], pairs[5], pairs[6], pairs[7]);
    }
  } else {
    if (thread / 32 >= W::kPatchWarps) return;
    constexpr int kChunks = TileN / 32;  // per row of the packed tile
    const int lane = thread % 32, kg = lane % 8, cq = lane / 8 + 4 * (thread / 32);
    // pairs[j][p]: column 4 cq + j of the block's columns at weight rows 8 kg + 2 p and + 1 of the k tile (low half
    // first), made two rows at a time so that fewer values are live at once.
    uint32_t pairs[4][4];
#pragma unroll
    for (int p = 0; p < 4; ++p) {
      float values[2][4];
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int i = 2 * p + e, r = 8 * kg + i;
        const float scale = scales[r * kGroups + cq / 8];
        const uint32_t word = *reinterpret_cast<const uint16_t*>(
            packed_tile + r * (TileN / 2) + (((cq / 8) ^ (kg & (kChunks - 1))) << 4) + (2 * cq) % 16);
        const uint32_t high = nibble_offsets(word, true), low = nibble_offsets(word, false);
#pragma unroll
        for (int b = 0; b < 2; ++b) {  // byte b: columns 2 b (high nibble) and 2 b + 1
          values[e][2 * b] = __fmul_rn(load_shared(code_entry(high, code_address, b)), scale);
          values[e][2 * b + 1] = __fmul_rn(load_shared(code_entry(low, code_address, b)), scale);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) pairs[j][p] = pack_pair<T>(values[0][j], values[1][j]);
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
      *reinterpret_cast<uint4*>(b_tile + swizzled(4 * cq + j, kg)) =
          make_uint4(pairs[j][0], pairs[j][1], pairs[j][2], pairs[j][3]);
  }
}

template <typename T, int TileN, bool backward, int Slices>
__global__ void __launch_bounds__(WgmmaBlock<TileN, Slices>::kThreads,
                                  WgmmaBlock<TileN, Slices>::blocks_per_sm(backward))
    matmul_4bit_wgmma_kernel(const __grid_constant__ FourBitWeight w, const __grid_constant__ MapParam map_param,
                             const T* __restrict__ a, MatmulShape shape, T* __restrict__ c) {
  // Compiled for every architecture (the PTX wrappers trap below sm_90a), launched only where
  // matmul_4bit_wgmma_available().
  using W = WgmmaTiling<TileN>;
  AUTOTRAIN_DYNAMIC_SHARED(uint8_t, shared);
  __shared__ __align__(256) float code[16];  // for code_entry
  __shared__ float map[256];
  __shared__ float slice_scales[Slices][2][W::kThreads];  // of k steps of even and odd index (wgmma_load_scale)
  load_code_and_map(w, map_param, code, map);
  const uint32_t code_address = code_address_of(code);
  // Warp-uniform by construction (a broadcast of lane 0's value), so that the compiler keeps what is computed from
  // them (the wgmma descriptors) in uniform registers.
  const int slice = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / W::kThreads), 0);
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x / 128) % 2, 0);
  uint8_t* const tiles = shared + ((1024 - (shared_address(shared) & 1023)) & 1023);
  uint8_t* a_tiles = tiles + slice * W::kSliceBytes;
  uint8_t* b_tiles = a_tiles + W::kStages * W::kATileBytes;
  uint8_t* packed_tiles = b_tiles + 2 * W::kBTileBytes;
  float(&scales)[2][W::kThreads] = slice_scales[slice];

  const int64_t n0 = int64_t(blockIdx.x) * W::kTileN, m0 = int64_t(blockIdx.y) * W::kTileM;
  // This slice's k steps: step s is k tile Slices * s + slice (all zeros past the last tile: the copies zero-fill
  // what lies past k, and its scales are 0).
  const int steps = static_cast<int>((shape.k + Slices * W::kTileK - 1) / (Slices * W::kTileK));
  auto k_tile = [&](int step) { return Slices * step + slice; };
  const int block_shift = __ffs(w.blocksize) - 1;
  // This thread's index in its slice (threadIdx.x where the block is one slice).
  const int thread = Slices == 1 ? static_cast<int>(threadIdx.x) : static_cast<int>(threadIdx.x) % W::kThreads;
  const WgmmaPieces<T, TileN> pieces = wgmma_pieces<T, TileN, backward>(w, a, shape, m0, n0, thread);
  auto a_tile = [&](int step) { return a_tiles + (step % W::kStages) * W::kATileBytes; };
  auto packed_tile = [&](int step) { return packed_tiles + (step % W::kStages) * W::kPackedTileBytes; };
  auto b_tile = [&](int step) { return b_tiles + (step % 2) * W::kBTileBytes; };

#pragma unroll
  for (int s = 0; s < W::kStages - 1; ++s) {
    if (s < steps)
      wgmma_copy_tile<T, TileN, backward>(w, pieces, a, shape, k_tile(s), a_tile(s), packed_tile(s), thread);
    commit_copies();  // a group per step, empty past the end, so that the waits below count right
  }
  WgmmaScale scale = wgmma_load_scale<TileN, backward>(w, n0, k_tile(0), block_shift, thread);
  wgmma_store_scale(w, map, scale, scales[0], thread);
  if (steps > 1) scale = wgmma_load_scale<TileN, backward>(w, n0, k_tile(1), block_shift, thread);
  wgmma_store_scale(w, map, scale, scales[1], thread);
  wait_copies<W::kStages - 2>();  // step 0
  sync_slice<Slices>(slice);
  wgmma_dequantize<T, TileN, backward>(packed_tile(0), code_address, scales[0], b_tile(0), thread);

  // This warpgroup's A rows at stage 0 and B buffer 0; another stage, buffer or k step is an offset in 16-byte units
  // in the descriptor's start address field (shared addresses stay below 2^18: it never carries out of it).
  const uint64_t a_descriptor = swizzled_descriptor(shared_address(a_tiles) + warpgroup * 64 * W::kRowBytes);
  const uint64_t b_descriptor = swizzled_descriptor(shared_address(b_tiles));
  float acc[W::kAccumulators];
#pragma unroll
  for (int i = 0; i < W::kAccumulators; ++i) acc[i] = 0.0f;
  for (int step = 0; step < steps; ++step) {
    // Step + 1 has arrived; after the barrier every wgmma of step - 1 is done (each warpgroup waited for its own)
    // and every thread's writes of A tile `step` (its copies, waited for by now) and of B tile `step` (dequantized
    // before this point) are visible to the wgmmas below: one fence covers both.
    wait_copies<W::kStages - 3>();
    fence_shared_for_wgmma();
    sync_slice<Slices>(slice);
    const int ahead = step + W::kStages - 1;
    if (ahead < steps)
      wgmma_copy_tile<T, TileN, backward>(w, pieces, a, shape, k_tile(ahead), a_tile(ahead), packed_tile(ahead),
                                          thread);
    commit_copies();
    const bool next = step + 1 < steps, after_next = step + 2 < steps;
    // Step + 2's scales: loaded now, stored after the dequantization below into the buffer that this step's used
    // (read before the barrier above), read after the next barrier.
    if (after_next) scale = wgmma_load_scale<TileN, backward>(w, n0, k_tile(step + 2), block_shift, thread);
    const uint64_t a_at = a_descriptor + static_cast<uint64_t>((step % W::kStages) * (W::kATileBytes / 16));
    const uint64_t b_at = b_descriptor + static_cast<uint64_t>((step % 2) * (W::kBTileBytes / 16));
    fence_accumulators(acc);  // the accumulators' last writes (the zeroing) before the fence, as CUTLASS orders it
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < W::kTileK / 16; ++ks)  // k steps of 16 values: 32 bytes further along the rows
      wgmma_m64k16<T, TileN>(acc, a_at + 2 * ks, b_at + 2 * ks);
    wgmma_commit();
    if (next)
      wgmma_dequantize<T, TileN, backward>(packed_tile(step + 1), code_address, scales[(step + 1) % 2],
                                           b_tile(step + 1), thread);
    if (after_next) wgmma_store_scale(w, map, scale, scales[step % 2], thread);
    wgmma_wait<0>();
    fence_accumulators(acc);
  }
  wait_copies<0>();  // no copy may still be writing shared memory when the block exits

  if constexpr (Slices == 2) {
    // Slice 1's sums to slice 0 through the tiles' memory, which no copy or wgmma reads any more after the barrier:
    // thread t of slice 1 writes its accumulator i at i * kThreads + t, which thread t of slice 0 adds (consecutive
    // threads, consecutive words).
    static_assert(W::kAccumulators * W::kThreads * sizeof(float) <= W::kSliceBytes, "the sums fit a slice's tiles");
    float* sums = reinterpret_cast<float*>(tiles);
    __syncthreads();
    if (slice == 1) {
#pragma unroll
      for (int i = 0; i < W::kAccumulators; ++i) sums[i * W::kThreads + thread] = acc[i];
    }
    __syncthreads();
    if (slice == 1) return;
#pragma unroll
    for (int i = 0; i < W::kAccumulators; ++i) acc[i] += sums[i * W::kThreads + thread];
  }

  // Accumulator fragments: row 16 (warp % 4) + g (+ 8) of the warpgroup's 64, columns 8 j + 2 t, + 1; shape.n is
  // even, so a pair of columns is stored whole or not at all.
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4, warp = (threadIdx.x / 32) % 4;
#pragma unroll
  for (int j = 0; j < TileN / 8; ++j) {
    const int64_t col = n0 + 8 * j + 2 * t;
    if (col >= shape.n) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = m0 + 64 * warpgroup + 16 * warp + g + 8 * half;
      if (row < shape.m)
        *reinterpret_cast<uint32_t*>(c + row * shape.n + col) =
            pack_pair<T>(acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1]);
    }
  }
}

// Whether the kernel's code in this binary is sm_90a's (the build may hold sm_90 code only, which the GPU would
// load instead): asked once of the GPU by a one-thread kernel.
__global__ void wgmma_probe_kernel(int* built) {
#if defined(AUTOTRAIN_HAS_WGMMA)
  *built = 1;
#else
  *built = 0;
#endif
}

template <typename T, int TileN, bool backward, int Slices = 1>
const char* launch_wgmma(const FourBitWeight& w, const MapParam& map, const void* a, MatmulShape shape, void* c,
                         cudaStream_t stream) {
  using B = WgmmaBlock<TileN, Slices>;
  return launch_over_tiles<B, T>(matmul_4bit_wgmma_kernel<T, TileN, backward, Slices>, B::kSharedBytes, w, map, a,
                                 shape, c, stream);
}

// The tilings compiled, by MatmulTile. 128 x 256 and 256 x 128 have warps of 64 x 64 (one block per SM); a block
// dequantizes its TileN columns of the weight once per TileM rows of A, so 256 x 128 does half the dequantization
// per product of 128 x 256 (3 stages: 86 KiB of shared memory, under the 99 KiB of sm_86 / sm_89); 64 x 64 suits
// shapes with few tiles (e.g. 2048 tokens by 1024 features: 512 blocks instead of 128).
using Tile256x128 = Tiling<256, 128, 4, 2, 3>;
using Tile128x256 = Tiling<128, 256, 2, 4>;
using Tile128x128 = Tiling<128, 128, 2, 4>;
using Tile64x128 = Tiling<64, 128, 2, 2>;
using Tile64x64 = Tiling<64, 64, 2, 2>;

template <typename Tile>
int64_t block_count(MatmulShape shape) {
  return ((shape.n + Tile::kTileN - 1) / Tile::kTileN) * ((shape.m + Tile::kTileM - 1) / Tile::kTileM);
}

// `automatic`: the largest tile that still gives every SM a few blocks (fewer, larger tiles read less of A and
// of the weight per product). A first guess, to be tuned against tools/bench_gpu's figures.
MatmulTile choose_tile(MatmulShape shape) {
  const int64_t sms = multiprocessors();
  if (block_count<Tile128x256>(shape) >= 2 * sms) return MatmulTile::m128n256;
  if (block_count<Tile128x128>(shape) >= 2 * sms) return MatmulTile::m128n128;
  if (block_count<Tile64x128>(shape) >= 2 * sms) return MatmulTile::m64n128;
  return MatmulTile::m64n64;
}

// `automatic_wgmma`: 128 x 128 where that gives every SM two blocks; where it gives at most one, the same tile with
// k split between two slices (16 warps an SM on one tile); in between, 128 x 64 (twice the blocks). A first guess
// from SASS instruction counts per SM, not yet timed: bench_gpu's wgmma section times all three on each shape.
MatmulTile choose_wgmma_tile(MatmulShape shape) {
  const int64_t sms = multiprocessors(), blocks = block_count<WgmmaBlock<128, 1>>(shape);
  if (blocks >= 2 * sms) return MatmulTile::m128n128_wgmma;
  if (blocks <= sms) return MatmulTile::m128n128_split_k_wgmma;
  return MatmulTile::m128n64_wgmma;
}

template <typename T, bool backward>
const char* launch_tiled(MatmulTile tile, const FourBitWeight& w, const MapParam& map, const void* a,
                         MatmulShape shape, void* c, cudaStream_t stream) {
  switch (tile == MatmulTile::automatic ? choose_tile(shape) : tile) {
    case MatmulTile::automatic_wgmma:
    case MatmulTile::m128n128_wgmma:
    case MatmulTile::m128n64_wgmma:
    case MatmulTile::m128n128_split_k_wgmma:
      if (!matmul_4bit_wgmma_available())
        return "matmul_4bit: the wgmma tilings need an sm_90 GPU (H100 / H200) and a build with sm_90a code";
      switch (tile == MatmulTile::automatic_wgmma ? choose_wgmma_tile(shape) : tile) {
        case MatmulTile::m128n128_wgmma: return launch_wgmma<T, 128, backward>(w, map, a, shape, c, stream);
        case MatmulTile::m128n128_split_k_wgmma: return launch_wgmma<T, 128, backward, 2>(w, map, a, shape, c, stream);
        default: return launch_wgmma<T, 64, backward>(w, map, a, shape, c, stream);
      }
    case MatmulTile::m256n128: return launch_matmul<Tile256x128, T, backward>(w, map, a, shape, c, stream);
    case MatmulTile::m128n256: return launch_matmul<Tile128x256, T, backward>(w, map, a, shape, c, stream);
    case MatmulTile::m64n128: return launch_matmul<Tile64x128, T, backward>(w, map, a, shape, c, stream);
    case MatmulTile::m64n64: return launch_matmul<Tile64x64, T, backward>(w, map, a, shape, c, stream);
    default: return launch_matmul<Tile128x128, T, backward>(w, map, a, shape, c, stream);
  }
}

}  // namespace

const char* matmul_4bit_unfit(const FourBitWeight& w, const void* a, const void* c, DType dtype) {
  if (dtype == DType::f32) return "it multiplies fp16 / bf16 only";
  if (w.cols % 32 != 0 || w.rows % 8 != 0) return "it needs the weight's columns a multiple of 32 and rows of 8";
  if (!indexes_fit_31_bits(w)) return "it indexes weights of fewer than 2^31 values";
  if (reinterpret_cast<uintptr_t>(w.packed) % 16 != 0 || reinterpret_cast<uintptr_t>(a) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(c) % 4 != 0)
    return "it needs the packed weight and the input 16-byte aligned, the output 4-byte aligned";
  if (!tensor_cores_available()) return "it needs a GPU of compute capability 8.0 or newer";
  return nullptr;
}

MatmulTile matmul_4bit_wgmma_tile(const FourBitWeight& w, int64_t m, MatmulPass pass) {
  return choose_wgmma_tile(matmul_shape(w, m, pass));
}

bool matmul_4bit_wgmma_available() {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  return true;
#else
  // Asked once per process: a process's GPUs are taken to be of one kind.
  static const bool available = [] {
    if (current_device_attribute(cudaDevAttrComputeCapabilityMajor) != 9 ||
        current_device_attribute(cudaDevAttrComputeCapabilityMinor) != 0)
      return false;
    int* flag = nullptr;
    if (cudaMalloc(&flag, sizeof(int)) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    int built = 0;
    wgmma_probe_kernel<<<1, 1>>>(flag);
    const bool copied = cudaMemcpy(&built, flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
    cudaFree(flag);
    cudaGetLastError();
    return copied && built == 1;
  }();
  return available;
#endif
}

const char* matmul_4bit(const FourBitWeight& w, const DynamicMap* map, const void* a, int64_t m, void* c, DType dtype,
                        MatmulPass pass, void* stream, MatmulTile tile) {
  if (const char* problem = check_weight(w, map)) return problem;
  if (m < 1) return "matmul_4bit: no rows";
  if ((m + 63) / 64 > 65535) return "matmul_4bit: more than 65535 tiles of 64 rows";  // gridDim.y
  if (const char* unfit = matmul_4bit_unfit(w, a, c, dtype)) {
    static thread_local std::string message;
    message = std::string("matmul_4bit: the kernel cannot take this weight: ") + unfit;
    return message.c_str();
  }
  const MapParam param = map_param_of(w, map);
  auto s = static_cast<cudaStream_t>(stream);
  const bool backward = pass == MatmulPass::backward;
  const MatmulShape shape = matmul_shape(w, m, pass);
  if (dtype == DType::f16)
    return backward ? launch_tiled<__half, true>(tile, w, param, a, shape, c, s)
                    : launch_tiled<__half, false>(tile, w, param, a, shape, c, s);
  return backward ? launch_tiled<__nv_bfloat16, true>(tile, w, param, a, shape, c, s)
                  : launch_tiled<__nv_bfloat16, false>(tile, w, param, a, shape, c, s);
}

}  // namespace autotrain::cuda
