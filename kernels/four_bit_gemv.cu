// The GEMV of token generation on 4-bit (NF4 / FP4) weights: y (m, rows) = x (m, cols) . W^T for m <= 8 rows of x,
// each packed byte read once, on the CUDA cores or the tensor cores. The CPU reference is src/quant.cpp
// (dequantize_4bit) and a matmul; tests/cuda_test.cpp holds these kernels to it.
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
//
// A lane's 32 values share one scale, so it sums code * x over them and multiplies the sum by the scale once:
// the weight values are code * scale unrounded (the tensor-core kernel's semantics, with fp32 codes). Rounding
// each value to the dtype first, as the first version did, cost a float-to-bf16/fp16 conversion per value on a
// quarter-rate pipe, and with it the kernel was bound by instructions, not memory (~1 TB/s on an H200).
constexpr int kGemvRows = 2;    // rows per warp
constexpr int kGemvChunks = 4;  // 1024-column chunks in flight at once

template <typename T, int M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(const __grid_constant__ FourBitWeight w, const __grid_constant__ MapParam map_param,
                const T* __restrict__ x, T* __restrict__ y) {
  __shared__ __align__(256) float code[16];  // for code_entry
  __shared__ float map[256];
  load_code_and_map(w, map_param, code, map);
  const int lane = threadIdx.x % 32;
  const uint32_t code_address = code_address_of(code);
  const int64_t row0 = (int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32) * kGemvRows;
  if (row0 >= w.rows) return;
  float acc[kGemvRows][M] = {};
  const int cols = static_cast<int>(w.cols);
  const int block_shift = __ffs(w.blocksize) - 1;
  // The flat index of each row's start, in 32 bits (the launcher sends weights it cannot index so to the kernel
  // below: indexes_fit_31_bits): rows past the end repeat the last; never written.
  uint32_t row_starts[kGemvRows];
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) row_starts[r] = static_cast<uint32_t>(min(row0 + r, w.rows - 1) * w.cols);
  for (int base = lane * 32; base < cols; base += 1024 * kGemvChunks) {
    uint4 words[kGemvChunks][kGemvRows];
    BlockStats stats[kGemvChunks][kGemvRows];
#pragma unroll
    for (int c = 0; c < kGemvChunks; ++c)
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        const int k = base + c * 1024;
        words[c][r] = make_uint4(0, 0, 0, 0);
        if (k < cols) {
          const uint32_t start = row_starts[r] + static_cast<uint32_t>(k);
          words[c][r] = __ldg(reinterpret_cast<const uint4*>(w.packed + (start >> 1)));
          stats[c][r] = load_block_stats(w, start >> block_shift);
        }
      }
#pragma unroll
    for (int c = 0; c < kGemvChunks; ++c) {
      const int k = base + c * 1024;
      if (k >= cols) break;
      float sum[kGemvRows][M] = {};  // code . x over the lane's 32 columns
#pragma unroll
      for (int part = 0; part < 4; ++part) {  // 8 values of each row at a time
        float xv[M][8];
#pragma unroll
        for (int m = 0; m < M; ++m) load8(x + m * cols + k + part * 8, xv[m]);
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r) {
          const uint4& q = words[c][r];
          const uint32_t word = part == 0 ? q.x : part == 1 ? q.y : part == 2 ? q.z : q.w;
          const uint32_t offsets[2] = {nibble_offsets(word, true), nibble_offsets(word, false)};
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const float cv = load_shared(code_entry(offsets[e & 1], code_address, e / 2));
#pragma unroll
            for (int m = 0; m < M; ++m) sum[r][m] = fmaf(cv, xv[m][e], sum[r][m]);
          }
        }
      }
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        const float scale = scale_of(w, map, stats[c][r]);
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = fmaf(sum[r][m], scale, acc[r][m]);
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
__global__ void gemv_any_kernel(const __grid_constant__ FourBitWeight w, const __grid_constant__ MapParam map_param,
                                const T* __restrict__ x, int m_count, T* __restrict__ y) {
  __shared__ float code[16];
  __shared__ float map[256];
  load_code_and_map(w, map_param, code, map);
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= w.rows) return;
  float acc[kMaxGemvRows] = {};
  for (int64_t k = lane; k < w.cols; k += 32) {
    const float v = element(w, code, map, row * w.cols + k);  // code * scale in fp32, as the kernel above
    for (int m = 0; m < m_count; ++m) acc[m] = fmaf(v, to_float(x[m * w.cols + k]), acc[m]);
  }
  for (int m = 0; m < m_count; ++m) {
    const float sum = warp_sum(acc[m]);
    if (lane == 0) y[m * w.rows + row] = from_float<T>(sum);
  }
}

// ---- GEMV on tensor cores ---------------------------------------------------------------------------------
//
// For fp16 / bf16 with cols % 64 == 0 and blocksize % 64 == 0. A block computes 16 rows of y for all m <= 8
// rows of x with mma.m16n8k16 (A: 16 weight rows x 16 columns, B: 16 columns x 8 rows of x, fp32
// accumulators); its warps share the row's 64-column chunks (each inside one quantization block) and add their
// sums in shared memory at the end.
//
// The weight values fed to the MMA are the 16 code values rounded to the dtype; each chunk's sum is then
// multiplied by its block's scale in fp32. (The CUDA-core kernels round code * scale per value instead, as
// dequantize_4bit does; both are within one rounding of the dtype of the exact product.)
//
// Fragments of mma.m16n8k16 (PTX ISA), lane = 4 g + t: A registers hold {row g, k 2t..2t+1}, {row g+8, k 2t..2t+1},
// {row g, k 2t+8..2t+9}, {row g+8, k 2t+8..2t+9}; B registers {k 2t..2t+1, n g}, {k 2t+8..2t+9, n g}; D holds
// {row g, n 2t}, {row g, n 2t+1}, {row g+8, n 2t}, {row g+8, n 2t+1}. A dot product does not care in which order
// its columns are added, so k is mapped onto columns such that each lane reads whole bytes of its own: in a
// chunk, lane t reads the packed bytes 8t..8t+7 (columns 16t..16t+15) of rows g and g+8, and the chunk's j-th MMA
// (j = 0..3) takes byte 2j as k 2t..2t+1 and byte 2j+1 as k 2t+8..2t+9, i.e. columns 16t+4j..16t+4j+3; B takes
// x at those same columns, which are 32 consecutive bytes of x for the lane.
//
// A byte becomes its A register (two values, the high nibble's in the low half) through a 256-entry table in
// shared memory, kept in 32 copies so that lane l always reads bank l: no bank conflicts. Entry b's copies fill a
// row of 128 bytes, or (for the gemv_tiles layout: the wide table) the first 128 bytes of a row of 256, the rest
// unused, so that a lookup's offset in the table, b * 256 + 4 * lane, is one PRMT of the packed word and 4 * lane
// (see pair_of). The rows layout keeps the 32 KiB table: its slots beside a 64 KiB one would not fit the 99 KiB
// of a block on sm_86 / sm_89 at the depths and block sizes it takes now (two tables, a template parameter, would
// have doubled its kernels and their compile time).
constexpr int kTensorCoreRows = 16;      // rows of y per block
constexpr int kTensorCoreMaxWarps = 16;  // warps per block at most
constexpr int kTensorCoreUnroll = 4;     // chunks per warp and step; lane t reads the statistics of chunk t
// A row of the pair table: 32 copies of an entry, then (the wide table) 32 unused words.
constexpr int pair_table_row_words(bool wide) { return wide ? 64 : 32; }
constexpr size_t pair_table_bytes(bool wide) { return 256 * pair_table_row_words(wide) * sizeof(uint32_t); }
static_assert(kTensorCoreUnroll == 4, "the 4 lanes of a row (t = 0..3) read one chunk's statistics each");
static_assert(kMaxGemvBlockWarps == kTensorCoreMaxWarps, "the largest block the header names");

// The table entry of byte i (0 ... 7) of a lane's 8 packed bytes: at `table` (the table's shared address) + byte *
// 256 (wide) or 128 + `lane_offset` (4 * lane). Wide, one PRMT, which puts the byte above 4 * lane, and one LDS,
// which adds `table` held in a uniform register ([R + UR]), per lookup; else a PRMT (the byte), a LEA (times 128,
// plus the lane's copy) and the LDS. Index arithmetic on the table as an array cost 4 instructions (SASS), and the
// lookups are the bulk of the kernel's instructions: the wide table's kernels have 13 % fewer instructions than
// the same kernels with the other one (tenth session, sm_90; 10 % in the rows layout's, had it the wide table).
template <bool kWide>
__device__ __forceinline__ uint32_t pair_of(const uint2& bytes, int i, uint32_t table, uint32_t lane_offset) {
  const uint32_t word = i < 4 ? bytes.x : bytes.y;
  if constexpr (kWide) return load_shared_word(table + __byte_perm(word, lane_offset, 0x5504 + ((i % 4) << 4)));
  return load_shared_word(table + lane_offset + (__byte_perm(word, 0, 0x4440 + i % 4) << 7));
}

// The pipeline: a warp's steps (tile, round) go through kDepth slots of shared memory, its own part of each. The
// warp copies a step's packed bytes there with cp.async, kDepth - 1 steps ahead of the step it multiplies, each
// lane waits for its own copies and a __syncwarp makes every lane's visible to the warp (see fetch). A step's
// statistics (lane t: chunk t's, rows g and g + 8) are read into registers as far ahead, in a ring of kDepth.
// The first version held the bytes in registers, 8 bytes a lane, which bounded the steps in flight to one or two;
// on an H100 it ran at 40-47 % of the card's bandwidth on Llama-3-8B's large weights, and at 45-50 % with these
// copies (sixth session, with the other changes of that session).
//
// A warp takes kTensorCoreUnroll consecutive chunks per step (chunks 4 (round * warps + warp) + u, u = 0..3), so
// that per row it reads one 128-byte run of the weight, and lane t's statistics are those of chunk t: the 4 lanes
// of a row read 4 neighbouring blocks' statistics, and pass the scales round by shuffles.
constexpr size_t kStageBytesPerWarp = kTensorCoreUnroll * 2 * 32 * sizeof(uint2);  // [chunk][row g / g + 8][lane]
constexpr size_t kPartialBytesPerWarp = 2 * kTensorCoreRows * 8 * sizeof(float);    // two tiles' sums

// The dynamic shared memory of a block (its static arrays hold the code and map, 1 KiB): the pair table, the
// warps' partial sums, the slots (none for a weight in the gemv_tiles layout, whose steps go to registers). Sized by
// the block's warps, so that blocks of 4 or 8 warps leave room for more blocks per SM.
size_t tensor_core_gemv_shared_bytes(int depth, int warps, bool tiles) {
  return pair_table_bytes(/*wide=*/tiles) + static_cast<size_t>(warps) * kPartialBytesPerWarp +
         (tiles ? 0 : static_cast<size_t>(depth) * warps * kStageBytesPerWarp);
}

// The weights of one launch of the tensor-core kernel: kCount weights that share x and their columns, block sizes,
// code and kind of scales, each with its own y. The grid's tiles of 16 rows are weight 0's, then weight 1's, ...:
// weight i's are [tile_end[i - 1], tile_end[i]) (tile_end[-1] = 0). One weight is the plain GEMV; several (q, k and
// v of a layer; gate and up) share the GPU's blocks in one launch (gemv_4bit_group), and a tile of each is what a
// launch of that weight alone would compute.
template <int kCount>
struct GemvWeights {
  FourBitWeight w[kCount];
  void* y[kCount];
  int tile_end[kCount];
};

// kTiles: the weights are in the gemv_tiles layout (cuda_kernels.h). A step's bytes then go straight into registers,
// 16 bytes a lane and chunk (a ring of kDepth steps in registers in place of the slots), with no copies to wait for.
template <typename T, Scales kScales, int kDepth, int kCount, bool kTiles>
__global__ void __launch_bounds__(kTensorCoreMaxWarps * 32)
    gemv_tensor_core_kernel(const __grid_constant__ GemvWeights<kCount> group,
                            const __grid_constant__ MapParam map_param, const T* __restrict__ x, int m_count) {
  // The pair table ([byte][copy]); the warps' sums of a tile ([buffer][warp][row][m]), in two buffers that tiles
  // take in turn, so that a tile's sums are written while the warps adding the one before may still read theirs
  // (one barrier per tile instead of two); the slots ([slot][warp][chunk][row g / g + 8][lane], a uint2 each).
  AUTOTRAIN_DYNAMIC_SHARED(uint32_t, pair_table);
  __shared__ float code[16];
  __shared__ float map[256];

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int g = lane / 4, t = lane % 4;
  const FourBitWeight& first = group.w[0];  // for what the weights share
  const int chunks = static_cast<int>(first.cols / 64);  // tiles, rounds and chunks fit 31 bits (indexes_fit_31_bits)
  // The grid fills the GPU once (see the launcher) and each block takes every gridDim.x-th tile of 16 rows, so
  // that the tables below are built once per block, not once per tile.
  const int tiles = group.tile_end[kCount - 1];
  // The weight of a tile (a constant 0 for one weight), and its first tile.
  auto weight_of = [&](int tile) {
    int which = 0;
#pragma unroll
    for (int i = 0; i + 1 < kCount; ++i) which += tile >= group.tile_end[i] ? 1 : 0;
    return which;
  };
  auto first_tile_of = [&](int which) { return which == 0 ? 0 : group.tile_end[which - 1]; };
  const int rounds = (chunks + warps * kTensorCoreUnroll - 1) / (warps * kTensorCoreUnroll);
  if (static_cast<int>(blockIdx.x) >= tiles) return;  // the whole block: the launcher gives none less than a tile
  constexpr int kRowWords = pair_table_row_words(/*wide=*/kTiles);
  float* const partial = reinterpret_cast<float*>(pair_table + 256 * kRowWords);
  uint2* const slots = reinterpret_cast<uint2*>(partial + 2 * warps * kTensorCoreRows * 8);
  // Lane l's bytes of chunk u, row g (h = 0) or g + 8 (h = 1), in a slot.
  auto staged = [&](int slot, int u, int h, int l) {
    return slots + ((slot * warps + warp) * kTensorCoreUnroll * 2 + u * 2 + h) * 32 + l;
  };
  auto chunk_of = [&](int round, int u) { return (round * warps + warp) * kTensorCoreUnroll + u; };
  const int block_shift = __ffs(first.blocksize) - 1;
  // Flat indices in 32 bits (the launcher refuses weights it cannot index so: indexes_fit_31_bits): 64-bit index
  // arithmetic was twice the instructions. A row's start is its index unclamped (below (rows + 15) cols < 2^32,
  // as rows cols < 2^31 and cols < 2^28) clamped to the last row's: one add and one min per row and step. (Rows
  // clamped in 64 bits, as the first version did, took some 140 instructions a step, as many as its MMAs and
  // table lookups together.)
  const uint32_t cols = static_cast<uint32_t>(first.cols);
  //
  // Step (tile, round)'s copies into `slot` (gemv_tiles: its bytes into `held`) and its statistics into `stats`.
  // Chunks that do not exist are not read (their pieces of the slot are zero-filled, gemv_tiles' registers left as
  // they are, and the MMAs skip them), and their statistics are zero, so that any scale made of them is a finite
  // number nobody uses; rows past the end repeat the last row (read, never written).
  auto fetch = [&](int tile, int round, int slot, BlockStats (&stats)[2], uint4 (&held)[kTensorCoreUnroll]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) stats[h] = BlockStats{0.0f, 0u};
    if (tile >= tiles) return;
    const int which = weight_of(tile);
    const FourBitWeight& w = group.w[which];
    const uint32_t weight_tile = static_cast<uint32_t>(tile - first_tile_of(which));  // the tile within its weight
    const uint32_t tile_start = weight_tile * kTensorCoreRows * cols;
    const uint32_t last_row_start = static_cast<uint32_t>(w.rows - 1) * cols;
    auto row_start = [&](int r) { return min(tile_start + static_cast<uint32_t>(r) * cols, last_row_start); };
    if (chunk_of(round, t) < chunks) {
      const uint32_t column = static_cast<uint32_t>(chunk_of(round, t)) * 64u;  // chunk t's first
#pragma unroll
      for (int h = 0; h < 2; ++h)  // blocks >= 64 values: the chunk's
        stats[h] = load_block_stats<kScales>(w, (row_start(g + 8 * h) + column) >> block_shift);
    }
    if constexpr (kTiles) {  // the lane's 16 bytes of each chunk, in one 512-byte run per chunk and warp
      // Nothing for the chunks that do not exist: the MMAs skip them. Where the columns are whole steps (chunks a
      // multiple of 4: 4096 or 14336 columns), a step that exists is read whole, from one address (the loads one
      // by one, each with its test, zeroing and 64-bit address, took 40 instructions a step, a tenth; SASS).
      const uint4* const step =
          reinterpret_cast<const uint4*>(w.packed) + (weight_tile * chunks + chunk_of(round, 0)) * 32u + lane;
      if (chunks % kTensorCoreUnroll == 0) {
        if (chunk_of(round, 0) < chunks) {
#pragma unroll
          for (int u = 0; u < kTensorCoreUnroll; ++u) held[u] = load_streaming16(step + 32 * u);
        }
        return;
      }
#pragma unroll
      for (int u = 0; u < kTensorCoreUnroll; ++u)
        if (chunk_of(round, u) < chunks) held[u] = load_streaming16(step + 32 * u);
      return;
    }
    // The warp copies its step's 16 rows x 128 bytes as 16-byte pieces, 4 rows (4 whole 128-byte lines) per
    // instruction, bypassing L1 (.cg), where x stays. Piece p = 32 k + lane is bytes 16 (p % 8) ... of row p / 8:
    // chunk u = (p % 8) / 2 of that row, the bytes of lanes t = 2 (p % 2) and t + 1 of its row g, side by side in
    // the slot. (Each lane copying its own 8 bytes, 8 rows per instruction, left the GEMV at 40 % of an H100's
    // bandwidth however many steps were in flight.)
    const int u = (lane % 8) / 2;
    const bool chunk_exists = chunk_of(round, u) < chunks;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int r = 4 * k + lane / 8;  // the row in the tile: g = r % 8, h = r / 8 (= k / 2)
      const uint32_t start = row_start(r) + static_cast<uint32_t>(chunk_of(round, u)) * 64u + 32u * (lane % 2);
      copy16_async(staged(slot, u, k / 2, 4 * (r % 8) + 2 * (lane % 2)), w.packed + (start >> 1), chunk_exists);
    }
  };
  // The step after (tile, round).
  auto advance = [&](int& tile, int& round) {
    if (++round == rounds) round = 0, tile += static_cast<int>(gridDim.x);
  };

  // The first kDepth - 1 steps are on their way while the block builds its tables. Slots and the rings of
  // statistics and (gemv_tiles) bytes are named by constants below (the main loop is unrolled kDepth times), so the
  // rings stay in registers.
  BlockStats stats[kDepth][2];
  uint4 held[kDepth][kTensorCoreUnroll];  // gemv_tiles only (unused otherwise, and left out by the compiler)
  int ahead_tile = static_cast<int>(blockIdx.x), ahead_round = 0;  // the next step to fetch
  auto fetch_ahead = [&](int slot) {
    fetch(ahead_tile, ahead_round, slot, stats[slot], held[slot]);
    if (!kTiles) commit_copies();  // a group per step, empty past the end, so that the waits below count right
    advance(ahead_tile, ahead_round);
  };
#pragma unroll
  for (int s = 0; s + 1 < kDepth; ++s) fetch_ahead(s);
  load_code_and_map(first, map_param, code, map);
  for (int i = threadIdx.x; i < 256 * 8; i += blockDim.x) {  // the 32 copies of entry i / 8, 4 per 16-byte store
    const int byte = i / 8;
    const uint32_t pair = pack_pair<T>(code[byte >> 4], code[byte & 15]);
    reinterpret_cast<uint4*>(pair_table + byte * kRowWords)[i % 8] = make_uint4(pair, pair, pair, pair);
  }
  __syncthreads();

  // The wide table's address as lane 0's: the same in every lane, but ptxas keeps it in a uniform register only when
  // it comes from the shuffle (computed in each lane, it cost an add per lookup). The other table's, as it was
  // timed (the shuffle made no fewer instructions there).
  const uint32_t table =
      kTiles ? __shfl_sync(0xFFFFFFFFu, shared_address(pair_table), 0) : shared_address(pair_table);
  const uint32_t lane_offset = 4u * lane;
  // Launched overlapping (gemv_overlap), the block got here while the kernel before it may still run: what it read
  // so far is the weight, which no kernel writes. x, and y, only from here.
  wait_for_prior_grids();
  // B column g is row g of x. Lanes past the last row of x read row 0 instead: D's column g then holds a sum that
  // is never stored (a column of D depends on its column of B only), and no lane needs a test or zeros per chunk.
  const uint32_t x_first = min(g, m_count - 1) * cols + 16u * t;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int tile = static_cast<int>(blockIdx.x), round = 0;  // the step multiplied next
  int parity = 0;                                       // the buffer of partial sums of its tile
  // Fetches the step kDepth - 1 after this one into the slot before `slot` (the slot of the step multiplied
  // last, whose bytes this lane has read), then multiplies this step from `slot`; false past the last step (every
  // warp of the block is at the same step).
  auto run = [&](int slot) {
    const BlockStats(&current_stats)[2] = stats[slot];
    if constexpr (kTiles) {
      fetch_ahead((slot + kDepth - 1) % kDepth);  // registers: each lane waits for its own loads where it uses them
    } else {
      __syncwarp();  // every lane has read the slot the copies below overwrite
      fetch_ahead((slot + kDepth - 1) % kDepth);
      wait_copies<kDepth - 1>();  // this lane's copies of this step have landed,
      __syncwarp();               // and every lane's
    }
    if (tile >= tiles) return false;
    const int which = weight_of(tile);
    const FourBitWeight& w = group.w[which];
    const float own_scale[2] = {scale_of<kScales>(w, map, current_stats[0]),
                                scale_of<kScales>(w, map, current_stats[1])};
    // Chunk u's x at its lane's 16 columns (8 words of two values), and its sum code . x for rows g, g + 8 over
    // them (j-th MMA: columns 16t + 4j ... 16t + 4j + 3, see above).
    auto load_x = [&](int u, uint32_t (&words)[8]) {
      const uint4* x_chunk =
          reinterpret_cast<const uint4*>(x + (x_first + static_cast<uint32_t>(chunk_of(round, u)) * 64u));
      const uint4 low = __ldg(x_chunk), high = __ldg(x_chunk + 1);
      words[0] = low.x, words[1] = low.y, words[2] = low.z, words[3] = low.w;
      words[4] = high.x, words[5] = high.y, words[6] = high.z, words[7] = high.w;
    };
    auto load_bytes = [&](int u, uint2 (&bytes)[2]) {
      if constexpr (kTiles) {
        bytes[0] = make_uint2(held[slot][u].x, held[slot][u].y);
        bytes[1] = make_uint2(held[slot][u].z, held[slot][u].w);
      } else {
        bytes[0] = *staged(slot, u, 0, lane);
        bytes[1] = *staged(slot, u, 1, lane);
      }
    };
    auto mma_j = [&](int j, const uint2 (&bytes)[2], const uint32_t (&words)[8], float (&dsum)[4]) {
      const uint32_t a[4] = {
          pair_of<kTiles>(bytes[0], 2 * j, table, lane_offset), pair_of<kTiles>(bytes[1], 2 * j, table, lane_offset),
          pair_of<kTiles>(bytes[0], 2 * j + 1, table, lane_offset),
          pair_of<kTiles>(bytes[1], 2 * j + 1, table, lane_offset)};
      mma_16x8x16<T>(dsum, a, words[2 * j], words[2 * j + 1]);
    };
    // acc += chunk u's sums times its blocks' scales (held by lane u of the row: a shuffle).
    auto add_scaled = [&](int u, const float (&dsum)[4]) {
      const int owner = (lane & ~3) + u;
      const float scale[2] = {__shfl_sync(0xFFFFFFFFu, own_scale[0], owner),
                              __shfl_sync(0xFFFFFFFFu, own_scale[1], owner)};
      acc[0] = fmaf(dsum[0], scale[0], acc[0]);
      acc[1] = fmaf(dsum[1], scale[0], acc[1]);
      acc[2] = fmaf(dsum[2], scale[1], acc[2]);
      acc[3] = fmaf(dsum[3], scale[1], acc[3]);
    };
    if (chunk_of(round, kTensorCoreUnroll - 1) < chunks) {
      // Every chunk exists (every step of a weight whose columns fill whole rounds, e.g. 4096 or 14336): the
      // chunks' MMAs go j by j across the chunks, so that consecutive MMAs are independent (chunk by chunk, each
      // MMA waited for the one before it). The sums are the same: each chunk still adds its 4 MMAs in j order, and
      // acc its chunks in order. (Two chunks at a time took 64 registers instead of 94, and three blocks of 8
      // warps an SM instead of two, yet were no faster on an H100: 3-9 % slower, across two runs.)
      uint32_t words[kTensorCoreUnroll][8];
      uint2 bytes[kTensorCoreUnroll][2];
      float dsum[kTensorCoreUnroll][4] = {};
#pragma unroll
      for (int u = 0; u < kTensorCoreUnroll; ++u) load_x(u, words[u]), load_bytes(u, bytes[u]);
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int u = 0; u < kTensorCoreUnroll; ++u) mma_j(j, bytes[u], words[u], dsum[u]);
#pragma unroll
      for (int u = 0; u < kTensorCoreUnroll; ++u) add_scaled(u, dsum[u]);
    } else {
#pragma unroll
      for (int u = 0; u < kTensorCoreUnroll && chunk_of(round, u) < chunks; ++u) {
        uint32_t words[8];
        uint2 bytes[2];
        float dsum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        load_x(u, words);
        load_bytes(u, bytes);
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_j(j, bytes, words, dsum);
        add_scaled(u, dsum);
      }
    }
    if (round == rounds - 1) {  // the tile's last round: add up the warps' sums
      const int64_t row0 = int64_t(tile - first_tile_of(which)) * kTensorCoreRows;
      T* const y = static_cast<T*>(group.y[which]);
      float* const sums = partial + parity * warps * kTensorCoreRows * 8;  // [warp][row][m]
      auto sum_of = [&](int k, int r, int m) -> float& { return sums[(k * kTensorCoreRows + r) * 8 + m]; };
      sum_of(warp, g, 2 * t) = acc[0];
      sum_of(warp, g, 2 * t + 1) = acc[1];
      sum_of(warp, g + 8, 2 * t) = acc[2];
      sum_of(warp, g + 8, 2 * t + 1) = acc[3];
      __syncthreads();
      if (threadIdx.x < kTensorCoreRows * 8) {
        const int r = threadIdx.x / 8, m = threadIdx.x % 8;
        if (m < m_count && row0 + r < w.rows) {
          float sum = 0.0f;
          for (int k = 0; k < warps; ++k) sum += sum_of(k, r, m);
          y[m * w.rows + row0 + r] = from_float<T>(sum);
        }
      }
      parity ^= 1;  // the next tile's barrier comes after these reads; the one after it, its writes to this buffer
      acc[0] = acc[1] = acc[2] = acc[3] = 0.0f;
    }
    advance(tile, round);
    return true;
  };
  static_assert(kDepth >= 1 && kDepth <= kMaxGemvDepth, "a depth the launcher names");
  for (bool more = true; more;) {
#pragma unroll
    for (int s = 0; s < kDepth; ++s)  // step i in slot i % kDepth: the loop runs whole cycles of the slots
      if (more) more = run(s);
  }
  wait_copies<0>();  // the copies of steps past the end are empty groups; none may be in flight at the exit
}

// The gemv_tiles layout of a weight (cuda_kernels.h), 8 bytes a thread: piece p of the output is half h = p % 2 of
// lane l = (p / 2) % 32's 16 bytes of tile and chunk (p / 64), i.e. the packed bytes 8 (l % 4) ... of the chunk's
// row l / 4 + 8 h of the tile (zeros past the last row).
__global__ void tile_for_gemv_kernel(const uint8_t* __restrict__ packed, int64_t rows, int64_t cols,
                                     uint2* __restrict__ out, int64_t pieces) {
  const int64_t chunks = cols / 64, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < pieces; p += stride) {
    const int h = static_cast<int>(p % 2), lane = static_cast<int>(p / 2 % 32);
    const int64_t tile_chunk = p / 64, tile = tile_chunk / chunks, chunk = tile_chunk % chunks;
    const int64_t row = tile * kTensorCoreRows + lane / 4 + 8 * h;
    uint2 piece = make_uint2(0, 0);
    if (row < rows) piece = *reinterpret_cast<const uint2*>(packed + (row * cols + chunk * 64 + 16 * (lane % 4)) / 2);
    out[p] = piece;
  }
}

// Why the tensor-core kernel cannot take this GEMV, or nullptr when it can.
const char* tensor_core_gemv_unfit(const FourBitWeight& w, const void* x, DType dtype) {
  if (dtype == DType::f32) return "it multiplies fp16 / bf16 only";
  if (w.cols % 64 != 0 || w.blocksize % 64 != 0) return "it needs cols and blocksize multiples of 64";
  if (!indexes_fit_31_bits(w)) return "it indexes weights of fewer than 2^31 values";
  if (reinterpret_cast<uintptr_t>(w.packed) % 16 != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0)
    return "it needs the packed weight and x 16-byte aligned";
  if (!tensor_cores_available()) return "it needs a GPU of compute capability 8.0 or newer";
  return nullptr;
}

// Warps per block: one unrolled round of chunks each for a tile (all of a 4096-column row in flight at once),
// 4 ... the most set_gemv_block_warps allows (see the header). The grid, not the block, spreads the rows over the
// SMs. (Three blocks of 8 warps an SM instead of two, the kernel held to 80 registers with a few spilled, were
// 2-18 % slower on an H100 over every projection of Llama-3-8B, a layer 84.6 us against 72.1: seventh session,
// not kept. Nsight Compute has the kernel's warps waiting on their own chains, half of the scheduler cycles
// without an eligible warp, and more warps of this kernel did not change that.)
// `tiles`: of all the launch's weights; `cols`: theirs.
int tensor_core_warps(int64_t tiles, int64_t cols) {
  const int setting = gemv_block_warps();
  const int most = setting != 0 ? setting : tiles >= multiprocessors() ? 8 : kTensorCoreMaxWarps;
  return static_cast<int>(std::clamp<int64_t>(cols / 64 / kTensorCoreUnroll, 4, most));
}

int64_t tiles_of(const FourBitWeight& w) { return (w.rows + kTensorCoreRows - 1) / kTensorCoreRows; }

template <typename T, Scales kScales, int kDepth, int kCount, bool kTiles>
void launch_tensor_core_kernel(int warps, const GemvWeights<kCount>& group, const MapParam& map, const void* x,
                               int64_t m, cudaStream_t stream) {
  const int64_t tiles = group.tile_end[kCount - 1];
  const int threads = 32 * warps;
  const size_t shared = tensor_core_gemv_shared_bytes(kDepth, warps, kTiles);
  auto* kernel = gemv_tensor_core_kernel<T, kScales, kDepth, kCount, kTiles>;
  // Above 48 KiB a kernel must ask for its dynamic shared memory (once per kernel and device; cheap to repeat).
  if (cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(shared)) != cudaSuccess)
    return;  // the caller reports launch_status()
  // One wave: as many blocks as the GPU holds at once (registers and shared memory allow), each looping over
  // tiles, instead of one block per tile (which took two waves and two table builds per SM for the 14336-row
  // weights of an 8B model). Whole tiles leave a tail (896 tiles of gate / up over 396 blocks: 3 to some, 2 to the
  // rest; Nsight Compute counted the SMs busy 68 % of the kernel's cycles). Equal shares of the steps for every
  // block, blocks sharing a tile handing their sums over through a workspace in global memory (an atomic count, the
  // last to arrive adds them), made that 85 % but was slower on every projection of Llama-3-8B on an H100: 5 %
  // (gate / up) to 50 % (q / o), with the hand-over's fences and extra barriers (seventh session; not kept).
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared) != cudaSuccess || per_sm < 1)
    per_sm = 1;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(tiles, multiprocessors() * per_sm));
  launch_kernel_overlapping(kernel, blocks, threads, shared, stream, gemv_overlap(), group, map,
                            static_cast<const T*>(x), static_cast<int>(m));
}

// The deepest pipeline (at most `depth`) whose shared memory fits a block of `warps` warps on this GPU.
int fitting_gemv_depth(int depth, int warps, bool tiles) {
  static const size_t limit = static_cast<size_t>(current_device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin));
  const size_t static_bytes = sizeof(float) * (16 + 256);
  while (depth > 1 && tensor_core_gemv_shared_bytes(depth, warps, tiles) + static_bytes > limit) --depth;
  return depth;
}

template <typename T, Scales kScales, int kCount, bool kTiles>
void launch_tensor_core_gemv(int depth, const GemvWeights<kCount>& group, const MapParam& map, const void* x,
                             int64_t m, cudaStream_t stream) {
  const int warps = tensor_core_warps(group.tile_end[kCount - 1], group.w[0].cols);
  switch (fitting_gemv_depth(depth, warps, kTiles)) {
    case 1: launch_tensor_core_kernel<T, kScales, 1, kCount, kTiles>(warps, group, map, x, m, stream); break;
    case 2: launch_tensor_core_kernel<T, kScales, 2, kCount, kTiles>(warps, group, map, x, m, stream); break;
    case 3: launch_tensor_core_kernel<T, kScales, 3, kCount, kTiles>(warps, group, map, x, m, stream); break;
    default: launch_tensor_core_kernel<T, kScales, 4, kCount, kTiles>(warps, group, map, x, m, stream); break;
  }
}

// By the layout, which the weights of a group share (group_unfit).
template <typename T, Scales kScales, int kCount>
void launch_tensor_core_gemv(int depth, const GemvWeights<kCount>& group, const MapParam& map, const void* x,
                             int64_t m, cudaStream_t stream) {
  if (group.w[0].layout == FourBitLayout::gemv_tiles)
    launch_tensor_core_gemv<T, kScales, kCount, true>(depth, group, map, x, m, stream);
  else
    launch_tensor_core_gemv<T, kScales, kCount, false>(depth, group, map, x, m, stream);
}

// The depth a launch takes where none is set: 3 on weights in the gemv_tiles layout with at least 4 tiles an SM,
// else kDefaultGemvDepth. On an H100 (seventeenth session) Llama-3-8B's gate / up, 6.8 tiles an SM, took 14.3 us at
// depth 3 against 15.4 at 2 for one row of x (7-10 % faster at 1-8 rows); q / o (1.9 tiles an SM) 2 % faster, down
// (1.9) and k / v (0.5) 2 % slower; in the rows layout depth 2 was the fastest everywhere.
int automatic_gemv_depth(int64_t tiles, bool tiled) {
  return tiled && tiles >= 4 * multiprocessors() ? 3 : kDefaultGemvDepth;
}

// The tensor-core kernel on `group` in `dtype` (fp16 / bf16), by its kind of scales.
template <int kCount>
void launch_tensor_core_gemv(const GemvWeights<kCount>& group, const MapParam& map, const void* x, int64_t m,
                             DType dtype, cudaStream_t stream) {
  const bool nested = group.w[0].absmax == nullptr;
  const int set = gemv_pipeline_depth();
  const int depth = set != 0 ? set
                             : automatic_gemv_depth(group.tile_end[kCount - 1],
                                                    group.w[0].layout == FourBitLayout::gemv_tiles);
  if (dtype == DType::f16)
    nested ? launch_tensor_core_gemv<__half, Scales::nested>(depth, group, map, x, m, stream)
           : launch_tensor_core_gemv<__half, Scales::absmax>(depth, group, map, x, m, stream);
  else
    nested ? launch_tensor_core_gemv<__nv_bfloat16, Scales::nested>(depth, group, map, x, m, stream)
           : launch_tensor_core_gemv<__nv_bfloat16, Scales::absmax>(depth, group, map, x, m, stream);
}

// Why the weights cannot share one launch of the tensor-core kernel (each fits it, and they share what its blocks
// hold for all their tiles), or nullptr when they can.
const char* group_unfit(const FourBitWeight* weights, int count, const void* x, DType dtype) {
  const FourBitWeight& first = weights[0];
  int64_t tiles = 0;
  for (int i = 0; i < count; ++i) {
    const FourBitWeight& w = weights[i];
    if (const char* unfit = tensor_core_gemv_unfit(w, x, dtype)) return unfit;
    if (w.layout != first.layout) return "the weights differ in layout";
    if (w.blocksize != first.blocksize || (w.absmax == nullptr) != (first.absmax == nullptr) ||
        (w.absmax == nullptr && w.nested_blocksize != first.nested_blocksize) ||
        !std::equal(w.code, w.code + 16, first.code))
      return "the weights differ in block sizes, code or kind of scales";
    tiles += tiles_of(w);
  }
  if (tiles > INT32_MAX) return "too many tiles";
  return nullptr;
}

std::atomic<int> g_gemv_depth{0};        // 0: automatic (automatic_gemv_depth)
std::atomic<int> g_gemv_block_warps{0};  // 0: automatic
std::atomic<bool> g_gemv_overlap{true};

template <typename T>
void launch_gemv(const FourBitWeight& w, const MapParam& map, const void* x, int64_t m, void* y, cudaStream_t stream) {
  const T* xt = static_cast<const T*>(x);
  T* yt = static_cast<T*>(y);
  const bool aligned = w.cols % 32 == 0 && reinterpret_cast<uintptr_t>(w.packed) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(x) % 32 == 0 && indexes_fit_31_bits(w);
  if (!aligned) {
    const unsigned blocks = static_cast<unsigned>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
    launch_kernel(gemv_any_kernel<T>, blocks, kWarpsPerBlock * 32, 0, stream, w, map, xt, static_cast<int>(m), yt);
    return;
  }
  const int64_t rows_per_block = kWarpsPerBlock * kGemvRows;
  const unsigned blocks = static_cast<unsigned>((w.rows + rows_per_block - 1) / rows_per_block);
  const unsigned threads = kWarpsPerBlock * 32;
  switch (m) {
    case 1: launch_kernel(gemv_kernel<T, 1>, blocks, threads, 0, stream, w, map, xt, yt); break;
    case 2: launch_kernel(gemv_kernel<T, 2>, blocks, threads, 0, stream, w, map, xt, yt); break;
    case 3: launch_kernel(gemv_kernel<T, 3>, blocks, threads, 0, stream, w, map, xt, yt); break;
    case 4: launch_kernel(gemv_kernel<T, 4>, blocks, threads, 0, stream, w, map, xt, yt); break;
    case 5: launch_kernel(gemv_kernel<T, 5>, blocks, threads, 0, stream, w, map, xt, yt); break;
    case 6: launch_kernel(gemv_kernel<T, 6>, blocks, threads, 0, stream, w, map, xt, yt); break;
    case 7: launch_kernel(gemv_kernel<T, 7>, blocks, threads, 0, stream, w, map, xt, yt); break;
    default: launch_kernel(gemv_kernel<T, 8>, blocks, threads, 0, stream, w, map, xt, yt); break;
  }
}

}  // namespace

void set_gemv_pipeline_depth(int depth) { g_gemv_depth.store(std::clamp(depth, 0, kMaxGemvDepth)); }
int gemv_pipeline_depth() { return g_gemv_depth.load(); }
void set_gemv_block_warps(int warps) {
  g_gemv_block_warps.store(warps == 0 ? 0 : std::clamp(warps, 4, kTensorCoreMaxWarps));
}
int gemv_block_warps() { return g_gemv_block_warps.load(); }
void set_gemv_overlap(bool on) { g_gemv_overlap.store(on); }
bool gemv_overlap() { return g_gemv_overlap.load(); }

const char* gemv_4bit(const FourBitWeight& w, const DynamicMap* map, const void* x, int64_t m, void* y, DType dtype,
                      void* stream, GemvKernel kernel) {
  const bool tiles = w.layout == FourBitLayout::gemv_tiles;
  if (const char* problem = check_weight(w, map, /*tiles=*/true)) return problem;
  if (m < 1 || m > kMaxGemvRows) return "gemv_4bit: m must be 1 ... 8";
  if (tiles && kernel == GemvKernel::cuda_cores) return "gemv_4bit: the CUDA-core kernel takes the rows layout only";
  const MapParam param = map_param_of(w, map);
  auto s = static_cast<cudaStream_t>(stream);
  const char* unfit = tensor_core_gemv_unfit(w, x, dtype);
  if ((kernel == GemvKernel::tensor_cores || tiles) && unfit != nullptr) {
    static thread_local std::string message;
    message = std::string("gemv_4bit: the tensor-core kernel cannot take this weight: ") + unfit;
    return message.c_str();
  }
  // `automatic` takes the tensor cores wherever they apply: on an H100 (2026-11-26, sixth session, Llama-3-8B's
  // seven projections, bf16, one row of x) they took 80 us per layer against 106 on the CUDA cores (k/v 4.6 us
  // against 5.3), and 2.3-4.1x less at 8 rows. (On an H200, before the tensor-core kernel
  // shared its statistics between lanes, the CUDA cores had been the faster for one row: 112 us against 136.)
  const bool tensor_cores =
      kernel == GemvKernel::tensor_cores || (kernel == GemvKernel::automatic && unfit == nullptr);
  if (tensor_cores) {
    launch_tensor_core_gemv(GemvWeights<1>{{w}, {y}, {static_cast<int>(tiles_of(w))}}, param, x, m, dtype, s);
    return launch_status();
  }
  with_element_type(dtype, [&](auto zero) { launch_gemv<decltype(zero)>(w, param, x, m, y, s); });
  return launch_status();
}

const char* gemv_4bit_group(const FourBitWeight* weights, int count, const DynamicMap* map, const void* x, int64_t m,
                            void* const* ys, DType dtype, void* stream) {
  if (count < 1 || count > kMaxGemvGroup) return "gemv_4bit_group: 1 ... 3 weights";
  for (int i = 0; i < count; ++i) {
    if (const char* problem = check_weight(weights[i], map, /*tiles=*/true)) return problem;
    if (weights[i].cols != weights[0].cols) return "gemv_4bit_group: the weights must have the columns of x";
  }
  if (m < 1 || m > kMaxGemvRows) return "gemv_4bit_group: m must be 1 ... 8";
  if (count == 1 || group_unfit(weights, count, x, dtype) != nullptr) {
    for (int i = 0; i < count; ++i)
      if (const char* problem = gemv_4bit(weights[i], map, x, m, ys[i], dtype, stream)) return problem;
    return nullptr;
  }
  // Slots past `count` repeat the last weight with no tiles of their own: the kernel never picks them.
  GemvWeights<kMaxGemvGroup> group{};
  int tiles = 0;
  for (int i = 0; i < kMaxGemvGroup; ++i) {
    const int from = std::min(i, count - 1);
    group.w[i] = weights[from];
    group.y[i] = ys[from];
    if (i < count) tiles += static_cast<int>(tiles_of(weights[i]));
    group.tile_end[i] = tiles;
  }
  launch_tensor_core_gemv(group, map_param_of(weights[0], map), x, m, dtype, static_cast<cudaStream_t>(stream));
  return launch_status();
}

int64_t gemv_tiles_bytes(int64_t rows, int64_t cols) {
  return (rows + kTensorCoreRows - 1) / kTensorCoreRows * kTensorCoreRows * cols / 2;
}

const char* gemv_tiles_unfit(const FourBitWeight& w, DType dtype) {
  if (w.packed == nullptr || w.rows <= 0 || w.cols <= 0) return "empty weight";
  if (w.layout != FourBitLayout::rows) return "the weight is not in the rows layout";
  return tensor_core_gemv_unfit(w, w.packed, dtype);  // x's alignment is checked by each call
}

const char* tile_4bit_for_gemv(const FourBitWeight& w, void* out, void* stream) {
  if (w.packed == nullptr || w.rows <= 0 || w.cols <= 0 || out == nullptr) return "tile_4bit_for_gemv: empty weight";
  if (w.layout != FourBitLayout::rows) return "tile_4bit_for_gemv: the weight must be in the rows layout";
  if (w.cols % 64 != 0) return "tile_4bit_for_gemv: cols must be a multiple of 64";
  if (reinterpret_cast<uintptr_t>(w.packed) % 16 != 0 || reinterpret_cast<uintptr_t>(out) % 16 != 0)
    return "tile_4bit_for_gemv: the packed weight and out must be 16-byte aligned";
  const int64_t pieces = gemv_tiles_bytes(w.rows, w.cols) / 8;
  launch_kernel(tile_for_gemv_kernel, grid_for(pieces, 256), 256, 0, static_cast<cudaStream_t>(stream), w.packed,
                w.rows, w.cols, static_cast<uint2*>(out), pieces);
  return launch_status();
}

}  // namespace autotrain::cuda
