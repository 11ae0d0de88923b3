// A CPU emulator of the CUDA execution model, for running the kernels in kernels/ where there is no GPU (CI). A
// translation unit includes simt_device.h first, then a kernel file (tests/simt/emulated_*.cpp): the kernel source
// compiles as plain C++, and each launch runs every CUDA thread of a block as a fiber on one CPU thread. This header
// is the emulator's interface (tests set its Options); simt_device.h gives device code its vocabulary.
//
// What is emulated, and how faithfully:
//  - threads and blocks: each block's threads run one at a time, each until it waits (a barrier, a warp collective);
//    blocks run one after another. __syncthreads releases when every thread of the block has arrived, a named
//    barrier (bar.sync id, count) when `count` threads have; threads that wait at different barriers forever, or a
//    __syncthreads after part of the block has exited, abort with a message.
//  - warp collectives (__syncwarp, __shfl_xor_sync, __shfl_sync, ldmatrix, mma.sync): all 32 lanes must reach the
//    same collective (else the run aborts); results follow the PTX ISA's fragment layouts. mma accumulates each
//    product in double and rounds once to fp32 (the hardware's order and intermediate precision differ; tests bound
//    the difference).
//  - cp.async: the copy lands either when it is issued or at the issuing thread's cp.async.wait_group (Options),
//    the two extremes of what the hardware may do, so that a missing wait or barrier shows in one of them. wgmma
//    (sm_90's warpgroup MMA) reads its shared-memory operands at the same two extremes.
//  - shared memory: __shared__ variables become statics (blocks run one at a time); dynamic shared memory is one
//    buffer, filled with 0xFF bytes (NaN in every float type) before each launch, so that reading a value nobody
//    wrote gives NaN. A 32-bit shared address is an offset into a 4 GiB window that holds both.
//  - scheduling: a block's warps run one at a time, each as far as it can (to a __syncthreads, or its end) before
//    the next starts, in ascending or descending order (Options), so that a warp gets as far ahead of the others as
//    the barriers allow and a race between warps shows in one of the two orders. Blocks run in the same order, so
//    that a kernel whose blocks hand work to each other runs with either one first.
//  - counted on request: ldmatrix's shared-memory wavefronts (LdmatrixTraffic) and the reads of a watched buffer.
// Not emulated: timing, occupancy, other bank conflicts, memory spaces (all pointers are host pointers), atomics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <utility>

namespace autotrain::simt {

enum class CopyTiming { at_issue, at_wait };
enum class ThreadOrder { ascending, descending };

struct Options {
  CopyTiming copies = CopyTiming::at_wait;
  ThreadOrder order = ThreadOrder::ascending;
  int multiprocessors = 4;  // what cudaDevAttrMultiProcessorCount reports: few, so that grid-stride loops loop
};
Options options();
void set_options(const Options& options);

// Launches so far (for tests that check a kernel did run under emulation).
int64_t launches();
// The last launch's grid, block and dynamic shared memory (for tests that check which tiling a launcher took).
struct Launch {
  unsigned grid_x = 0, grid_y = 0, threads = 0;
  size_t dynamic_shared_bytes = 0;
};
Launch last_launch();

// Shared-memory bank conflicts of ldmatrix, counted since the last reset: each 8 x 8 matrix of an ldmatrix is one
// wavefront of the 32 banks when its 8 rows of 16 bytes fall on distinct banks, and one more for each further
// distinct word on the busiest bank. A property of the kernel's shared layout (the padding of its rows), which
// the emulator can count without a GPU.
struct LdmatrixTraffic {
  int64_t matrices = 0;
  int64_t extra_wavefronts = 0;
};
LdmatrixTraffic ldmatrix_traffic();
void reset_ldmatrix_traffic();

// How many times kernels read each byte of [begin, begin + bytes) through __ldg and cp.async since watch() was
// called: how often a kernel reads its weight (plain loads are not counted). watch(nullptr, 0) stops counting.
void watch(const void* begin, size_t bytes);
// The fewest and the most reads of any watched byte.
std::pair<int64_t, int64_t> watched_reads();
void count_read(const void* p, size_t bytes);

struct Index {
  unsigned x = 0, y = 0, z = 0;
};
const Index& thread_index();
const Index& block_index();
const Index& block_dim();
const Index& grid_dim();

// Runs `body` once per CUDA thread of a grid.
void launch(dim3 grid, dim3 block, size_t dynamic_shared_bytes, const std::function<void()>& body);

void sync_block();
// bar.sync id, count (a named barrier, id 1-15; 0 is __syncthreads'): releases when `count` threads (whole warps)
// have arrived at barrier `id`. Every thread that arrives at one barrier must name the same count.
void sync_named(unsigned id, unsigned count);
// __syncwarp() with a full mask: every lane of the warp arrives before any goes on.
void sync_warp();
float shuffle_xor(float value, int lane_mask);
// __shfl_sync with a full mask: lane source_lane % 32's value.
float shuffle(float value, int source_lane);
// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 with d as both C and D.
void mma_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16);
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16.
void load_matrices(uint32_t (&r)[4], const void* row, bool transposed);
// cp.async.cg.shared.global [dst], [src], 16, valid ? 16 : 0; commit_group; wait_group pending.
void copy16_async(void* dst, const void* src, bool valid);
void commit_copies();
void wait_copies(int pending);
// wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{f16,bf16}.{f16,bf16} with A and B in shared memory through
// descriptors, d as both C and D (n / 2 values per thread, in the accumulator fragment layout). The layout taken is
// the one the kernels use, K-major with the 128-byte swizzle (others abort): row r of an operand is 64 two-byte
// values (128 bytes), rows 8 apart are the descriptor's stride apart, and the 16-byte chunks of a row are permuted
// by the shared address bits [4, 7) ^= [7, 10). Each warp of the warpgroup computes its 16 rows of D, so the
// emulator runs it per warp; like cp.async, it reads shared memory when issued or at the wgmma.wait_group that
// covers it (Options::copies), the two extremes of the hardware's asynchronous read. wgmma_commit / wgmma_wait are
// wgmma.commit_group / wgmma.wait_group.
void wgmma_m64k16(float* d, int n, uint64_t descriptor_a, uint64_t descriptor_b, bool bf16);
void wgmma_commit();
void wgmma_wait(int pending);

uint8_t* dynamic_shared();
uint32_t shared_address(const void* pointer);
const void* shared_pointer(uint32_t address);

[[noreturn]] void fail(const char* what);

inline unsigned byte_perm(unsigned x, unsigned y, unsigned selector) {
  const uint64_t bytes = (uint64_t(y) << 32) | x;
  unsigned result = 0;
  for (int n = 0; n < 4; ++n) result |= unsigned((bytes >> (8 * ((selector >> (4 * n)) & 7))) & 0xFF) << (8 * n);
  return result;
}

// One fp32 operation, rounded once (volatile keeps the compiler from contracting a * b + c into an FMA).
inline float mul_rn(float a, float b) {
  volatile float product = a * b;
  return product;
}
inline float add_rn(float a, float b) {
  volatile float sum = a + b;
  return sum;
}
inline float div_rn(float a, float b) {
  volatile float quotient = a / b;
  return quotient;
}
// CUDA's rsqrtf is within 2 ulps of 1 / sqrt(x); this is the correctly rounded value of it in fp32 steps.
inline float reciprocal_sqrt(float x) { return 1.0f / std::sqrt(x); }
inline float uint_as_float(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}
inline int find_first_set(int x) { return x == 0 ? 0 : __builtin_ctz(static_cast<unsigned>(x)) + 1; }
template <typename T>
T load_global(const T* p) {
  count_read(p, sizeof(T));
  return *p;
}

}  // namespace autotrain::simt
