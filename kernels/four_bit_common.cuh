// What the 4-bit kernels share (four_bit.cu: dequantization; four_bit_gemv.cu: the GEMVs; four_bit_matmul.cu: the
// training-shape matmul): a block's scale, the code and map in shared memory, the tensor cores' m16n8k16 MMA, and
// the checks of a weight. Internal to kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "autotrain/cuda_kernels.h"
#include "kernel_common.cuh"

namespace autotrain::cuda {

namespace {

// The map is needed only with double quantization; kernels take it by value (1 KiB of parameters). Kernel
// parameters are __grid_constant__, so that reading them by index (code, map) needs no per-thread local copy.
struct MapParam {
  DynamicMap map;
};

// The block of flat element i. Block sizes are powers of two (check_weight), so this is a shift: a 64-bit
// division by a runtime value costs ~100 instructions on a GPU, and one per chunk of 8 to 32 values dominated
// the first version of these kernels.
__device__ __forceinline__ int64_t block_of(const FourBitWeight& w, int64_t i) { return i >> (__ffs(w.blocksize) - 1); }

// A block's statistics as read from memory (its absmax, or with double quantization its nested absmax and its
// 8-bit code), before the arithmetic that makes them its scale (scale_of). Kernels that need several blocks'
// scales read all their statistics first and compute the scales where they use them: the map lookup of a
// double-quantized scale depends on the code just read, and written as one step it made each warp wait for each
// read in turn (8 memory round trips in a row per tile in the GEMV kernels' SASS, instead of one). No default
// values: kernels keep arrays of these for blocks they may not read, and zeroing them cost instructions in every
// step (load_block_stats sets what scale_of reads).
struct BlockStats {
  float absmax;
  uint32_t nested_code;
};

// Which statistics the weight has: read from it (`either`, the default), or fixed where a kernel is instantiated
// per kind (the tensor-core GEMV: the per-block test of w.absmax and the code of both kinds were a third of the
// instructions of its loads).
enum class Scales { either, absmax, nested };

template <Scales kScales = Scales::either>
__device__ __forceinline__ bool nested_scales(const FourBitWeight& w) {
  if constexpr (kScales == Scales::either) return w.absmax == nullptr;
  return kScales == Scales::nested;
}

// `block` is an int64_t, or a uint32_t in kernels that index in 32 bits (indexes_fit_31_bits).
template <Scales kScales = Scales::either, typename Index = int64_t>
__device__ __forceinline__ BlockStats load_block_stats(const FourBitWeight& w, Index block) {
  BlockStats stats;
  if (!nested_scales<kScales>(w)) {
    stats.absmax = __ldg(w.absmax + block);
  } else {
    stats.absmax = __ldg(w.nested_absmax + (block >> (__ffs(w.nested_blocksize) - 1)));
    stats.nested_code = __ldg(w.nested_codes + block);
  }
  return stats;
}

// The scale: absmax, or map[code] * nested absmax + offset (each an fp32 operation rounded as the CPU rounds it).
template <Scales kScales = Scales::either>
__device__ __forceinline__ float scale_of(const FourBitWeight& w, const float* map, const BlockStats& stats) {
  if (!nested_scales<kScales>(w)) return stats.absmax;
  return __fadd_rn(__fmul_rn(map[stats.nested_code], stats.absmax), w.offset);
}

__device__ __forceinline__ float block_scale(const FourBitWeight& w, const float* map, int64_t block) {
  return scale_of(w, map, load_block_stats(w, block));
}

// Every kernel's start: the code (and, with double quantization, the map) into the block's shared memory.
__device__ __forceinline__ void load_code_and_map(const FourBitWeight& w, const MapParam& map_param, float* code,
                                                  float* map) {
  if (threadIdx.x < 16) code[threadIdx.x] = w.code[threadIdx.x];
  if (w.absmax == nullptr)
    for (int k = threadIdx.x; k < 256; k += blockDim.x) map[k] = map_param.map.values[k];
  __syncthreads();
}

// The value of flat element i (in fp32, before rounding to the output dtype).
__device__ __forceinline__ float element(const FourBitWeight& w, const float* code, const float* map, int64_t i) {
  const uint8_t byte = w.packed[i >> 1];
  const int nibble = (i & 1) ? (byte & 0x0F) : (byte >> 4);
  return __fmul_rn(code[nibble], block_scale(w, map, block_of(w, i)));
}

// ---- code lookups -----------------------------------------------------------------------------------------
//
// A kernel that multiplies or dequantizes each value keeps the 16-entry code in shared memory, 256-byte aligned,
// and finds a value's entry in one PRMT: nibble_offsets gives each byte's high (or low) nibble times 4, a byte
// offset into the code, for the four bytes of a packed word at once; code_entry puts byte k of those as the low
// byte of the code's shared address, which is 0. (Shift, mask and address arithmetic per value cost ~5
// instructions instead of 1, and bound the GEMV.)
__device__ __forceinline__ uint32_t nibble_offsets(uint32_t word, bool high) {
  return (high ? word >> 2 : word << 2) & 0x3C3C3C3Cu;
}

__device__ __forceinline__ uint32_t code_entry(uint32_t offsets, uint32_t code_address, int k) {
  return __byte_perm(offsets, code_address, 0x7650 + k);
}

// A 32-bit word / a float of shared memory at a 32-bit shared-window address.
__device__ __forceinline__ uint32_t load_shared_word(uint32_t address) {
#ifdef AUTOTRAIN_SIMT_EMULATION
  return *static_cast<const uint32_t*>(::autotrain::simt::shared_pointer(address));
#else
  uint32_t value;
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(value) : "r"(address));
  return value;
#endif
}
__device__ __forceinline__ float load_shared(uint32_t address) { return __uint_as_float(load_shared_word(address)); }

__device__ __forceinline__ uint32_t shared_address(const void* p) {
#ifdef AUTOTRAIN_SIMT_EMULATION
  return ::autotrain::simt::shared_address(p);
#else
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
#endif
}

// The shared address of a kernel's code array (declared __align__(256)); traps if the alignment was not honoured,
// as code_entry would then read the wrong entries.
__device__ __forceinline__ uint32_t code_address_of(const float* code) {
  const uint32_t address = shared_address(code);
  if ((address & 0xFFu) != 0) __trap();
  return address;
}

// 16 bytes of global memory, read once: not kept in L1 (where the GEMV keeps x), nor through the texture path.
__device__ __forceinline__ uint4 load_streaming16(const void* p) {
#ifdef AUTOTRAIN_SIMT_EMULATION
  return ::autotrain::simt::load_global(static_cast<const uint4*>(p));
#else
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
#endif
}

// ---- cp.async (sm_80+; the launchers refuse older devices) ------------------------------------------------

// 16 bytes from global to shared memory (past L1), or 16 zero bytes when !valid (src is then not read).
__device__ __forceinline__ void copy16_async(void* dst, const void* src, bool valid) {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::copy16_async(dst, src, valid);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(valid ? 16 : 0));
#else
  __trap();
#endif
}

__device__ __forceinline__ void commit_copies() {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::commit_copies();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most `pending` committed groups of this thread's copies are still in flight.
template <int pending>
__device__ __forceinline__ void wait_copies() {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::wait_copies(pending);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
#endif
}

// ---- tensor cores ----------------------------------------------------------------------------------------

// Two values as one 32-bit register of two fp16 / bf16 (low half first), each rounded to nearest-even.
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float low, float high);
template <>
__device__ __forceinline__ uint32_t pack_pair<__half>(float low, float high) {
  const __half2 pair = __floats2half2_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}
template <>
__device__ __forceinline__ uint32_t pack_pair<__nv_bfloat16>(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// d += A . B for one m16n8k16 tile (fp32 accumulators).
template <typename T>
__device__ __forceinline__ void mma_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(AUTOTRAIN_SIMT_EMULATION)
  ::autotrain::simt::mma_16x8x16(d, a, b0, b1, std::is_same_v<T, __nv_bfloat16>);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#else
  __trap();  // the launcher never picks this kernel below sm_80
#endif
}

bool tensor_cores_available() {
  static const bool available = current_device_attribute(cudaDevAttrComputeCapabilityMajor) >= 8;
  return available;
}

// ---- checks ----------------------------------------------------------------------------------------------

MapParam map_param_of(const FourBitWeight& w, const DynamicMap* map) {
  MapParam param{};
  if (w.absmax == nullptr && map != nullptr) param.map = *map;
  return param;
}

// Whether the kernels may index the weight (and an x of up to kMaxGemvRows rows of it) in 31 bits: every weight a
// model has (the largest, an FFN of a 405B model, holds 0.9 G values). The GEMV and matmul kernels index in 32-bit
// arithmetic, which halves their index instructions; larger weights take the other kernels.
bool indexes_fit_31_bits(const FourBitWeight& w) {
  return w.rows * w.cols < (int64_t(1) << 31) && w.cols * kMaxGemvRows < (int64_t(1) << 31);
}

// `tiles`: whether the kernel takes the gemv_tiles layout (the tensor-core GEMV and the dequantization).
const char* check_weight(const FourBitWeight& w, const DynamicMap* map, bool tiles = false) {
  if (w.packed == nullptr || w.rows <= 0 || w.cols <= 0) return "4-bit kernel: empty weight";
  if (w.layout != FourBitLayout::rows && !(tiles && w.layout == FourBitLayout::gemv_tiles))
    return "4-bit kernel: this kernel takes weights in the rows layout only";
  if (w.blocksize < 32 || (w.blocksize & (w.blocksize - 1)) != 0)
    return "4-bit kernel: blocksize must be a power of two >= 32";
  if (w.absmax == nullptr && (w.nested_blocksize < 1 || (w.nested_blocksize & (w.nested_blocksize - 1)) != 0))
    return "4-bit kernel: the nested blocksize must be a power of two";
  if (w.absmax == nullptr && (w.nested_codes == nullptr || w.nested_absmax == nullptr || map == nullptr))
    return "4-bit kernel: a double-quantized weight needs its nested codes, nested absmax and map";
  return nullptr;
}

}  // namespace

}  // namespace autotrain::cuda
