// Entry points of the CUDA kernels in kernels/ (compiled only when the build has CUDA:
// AUTOTRAIN_WITH_CUDA). Each kernel has a CPU reference in src/ that tests hold it to. This header needs
// no CUDA headers: pointers are device pointers, `stream` is a cudaStream_t (nullptr: the default stream,
// the one libtorch uses unless told otherwise), and each launcher returns nullptr on success, else CUDA's
// description of the error.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace autotrain::cuda {

// The compute capabilities this build carries machine code for, e.g. "sm_80 sm_86 sm_89 sm_90 (+PTX)".
std::string compiled_architectures();

// Runs y = a*x + y for n = 1000 on device 0 and checks it against the same sum on the CPU. Returns ""
// on success, else what went wrong (no device, driver too old, no kernel image for this GPU, ...).
std::string self_test();

// Makes `index` the calling thread's current device (kernels launch there), if it is not already.
const char* use_device(int index);

struct DeviceInfo {
  std::string name;
  int multiprocessors = 0;
  double peak_bandwidth_gbs = 0;  // memory clock x bus width x 2 (DDR), from the device's attributes
  int64_t l2_cache_bytes = 0;
  int compute_capability = 0;  // major * 10 + minor: 80 for an A100, 90 for an H100
};
DeviceInfo device_info(int index);  // index -1: the current device

// For benchmarks: seconds per call of `launch(stream)` on the current device, with no CPU launch cost in the
// figure: `calls` calls are captured in one CUDA graph on a stream of its own, and the median of 5 timed
// replays (CUDA events, after one untimed call and one untimed replay) is divided by `calls`. `launch` must
// only enqueue work on `stream`. A negative result means CUDA refused (the error is in `error`).
double seconds_per_call_in_graph(const std::function<void(void* stream)>& launch, int calls, std::string* error);

// GPU memory in use (cudaMemGetInfo: total - free) on device `index`, in bytes: every process's allocations
// and CUDA contexts, not only this process's tensors. 0 when it cannot be read.
int64_t device_memory_used(int index);

enum class DType { f32, f16, bf16 };

// A 4-bit weight (rows, cols) as src/quant.h stores it, on the device: the weight flattened row-major,
// cut into blocks of `blocksize` (32 ... 4096, a power of two), two codes per byte, the first element of a
// byte in its high nibble. A block's scale is absmax[block], or with double quantization
// map[nested_codes[block]] * nested_absmax[block / nested_blocksize] + offset, rounded as the CPU does.
// How `packed` orders the bytes: `rows`, as src/quant.h stores them (the flat weight, row-major), or `gemv_tiles`
// (tile_4bit_for_gemv), which only the tensor-core GEMV and the dequantization take.
enum class FourBitLayout { rows, gemv_tiles };

struct FourBitWeight {
  const uint8_t* packed = nullptr;        // ceil(rows * cols / 2) bytes (gemv_tiles: gemv_tiles_bytes)
  const float* absmax = nullptr;          // one per block; nullptr when double quantized
  const uint8_t* nested_codes = nullptr;  // one per block when double quantized
  const float* nested_absmax = nullptr;   // one per nested block when double quantized
  int64_t rows = 0, cols = 0;
  int blocksize = 64, nested_blocksize = 256;
  float offset = 0;
  float code[16] = {};  // the 16 values of the code (NF4 or FP4)
  FourBitLayout layout = FourBitLayout::rows;  // of `packed`; the statistics are always by flat block
};

// bitsandbytes' dynamic 8-bit map, the values behind nested_codes (passed by value to the kernels).
struct DynamicMap {
  float values[256];
};

// Rows [row_begin, row_end) x columns [col_begin, col_end) of the weight, dense, into `out` (row-major,
// (row_end - row_begin) x (col_end - col_begin), in `dtype`): each value is code * scale in fp32, then
// rounded to `dtype` (what src/quant.cpp does). `map` may be nullptr when the weight is not double quantized. A
// weight in the gemv_tiles layout takes column ranges in multiples of 8 (the bytes are the same as from its rows
// layout).
const char* dequantize_4bit(const FourBitWeight& weight, const DynamicMap* map, int64_t row_begin, int64_t row_end,
                            int64_t col_begin, int64_t col_end, void* out, DType dtype, void* stream);
// Programmatic dependent launch of the dequantization (sm_90+; off by default: written after the seventh session's
// GPU time, so far run only under the emulator, where it changes nothing). Its blocks then read their weight while
// the kernel before it in the stream finishes (in training, the GEMM of the slice or projection before) and wait
// for that kernel before they write. Meant for the sliced matmul's small weights, whose dequantization is a fixed
// cost the GEMM does not amortise at 2048 tokens (k/v: 8 of 35 us on an H100); tools/bench_gpu matmul times it.
// The bytes are the same. Like the GEMV's overlap (below), it needs the weight not written by the kernel just
// before it.
void set_dequantize_overlap(bool on);
bool dequantize_overlap();

// y (m, rows) = x (m, cols) . W^T for 1 <= m <= 8 (token generation): each packed byte is read once and
// products accumulate in fp32. x and y are contiguous in `dtype`. Two kernels:
//  - tensor_cores (fp16 / bf16, cols and blocksize multiples of 64, sm_80+): the 16 code values rounded to
//    `dtype` go through the tensor cores, and each block's sum is multiplied by its scale in fp32;
//  - cuda_cores (any shape and dtype): fp32 codes; a lane's sum of code * x over values of one block is
//    multiplied by the block's scale (so each weight value is code * scale, not rounded to `dtype`).
// `automatic` takes the tensor-core kernel wherever it applies (on an H100 the faster over a layer's projections,
// for one row of x as for eight); asking for the tensor-core kernel where it does not apply is an error, and so is
// a weight in the gemv_tiles layout that it cannot take (no other kernel reads that layout).
constexpr int64_t kMaxGemvRows = 8;
enum class GemvKernel { automatic, tensor_cores, cuda_cores };
const char* gemv_4bit(const FourBitWeight& weight, const DynamicMap* map, const void* x, int64_t m, void* y,
                      DType dtype, void* stream, GemvKernel kernel = GemvKernel::automatic);
// The GEMVs of up to kMaxGemvGroup weights on one x, ys[i] (m, rows_i) = x (m, cols) . W_i^T (q, k and v of a layer;
// gate and up), in one launch of the tensor-core kernel where it takes each of them and they share their columns,
// block sizes, code, kind of scales and layout (rows or gemv_tiles): their tiles then share the GPU's blocks, so
// that the small ones (k and v of Llama-3-8B have 64 tiles of 16 rows, for 132 SMs on an H100) do not leave SMs
// idle, and one launch's fixed cost replaces three. Otherwise one gemv_4bit (automatic) each. A tile's sums are
// those of gemv_4bit with the tensor cores, in the order of the additions that the block's warps set: the group's
// tile count can change the automatic number of warps (set_gemv_block_warps), within the same bound; with that
// set, the same bits.
constexpr int kMaxGemvGroup = 3;
const char* gemv_4bit_group(const FourBitWeight* weights, int count, const DynamicMap* map, const void* x, int64_t m,
                            void* const* ys, DType dtype, void* stream);
// The GEMV-tiles layout of a weight's packed bytes, for the tensor-core GEMV (generation on a GPU converts an int4
// model to it unless AUTOTRAIN_GEMV_TILES=0, see src/cuda_ops.h). For each tile of 16 rows and each
// chunk of 64 columns, in that order (tile by tile, chunks in order), 512 bytes: 16 per lane of a warp, in lane
// order, lane 4g + t holding the chunk's packed bytes 8t ... 8t + 7 of the tile's row g, then the same bytes of row
// g + 8; rows past the last are zeros. Those 16 bytes are the lane's operands of the kernel's four MMAs of the chunk
// (see kernels/four_bit_gemv.cu), so that each lane loads them with one 16-byte read straight into registers, where
// the rows layout goes through shared memory (cp.async) and back. gemv_tiles_bytes: the layout's size, whole tiles.
// tile_4bit_for_gemv writes it from a weight in the rows layout (cols a multiple of 64; packed and out 16-byte
// aligned); the result, as FourBitWeight::packed with layout gemv_tiles and the same statistics, gives gemv_4bit's
// sums bit for bit, and dequantize_4bit's values.
int64_t gemv_tiles_bytes(int64_t rows, int64_t cols);
// Why the tensor-core GEMV could not take `weight` (in the rows layout) at `dtype` once tiled, or nullptr when it
// could (then every GEMV of it at `dtype`, with x 16-byte aligned, takes that kernel).
const char* gemv_tiles_unfit(const FourBitWeight& weight, DType dtype);
const char* tile_4bit_for_gemv(const FourBitWeight& weight, void* out, void* stream);

// The tensor-core kernel's pipeline depth: how many steps (4 chunks of 64 columns of 16 rows) a warp has under
// way at once, the one it multiplies and depth - 1 whose bytes are on their way to shared memory (cp.async);
// 1 ... kMaxGemvDepth, each giving the same sums bit for bit, and lowered where a GPU's shared memory per block
// cannot hold it (2 KiB per warp and step). set_gemv_pipeline_depth(0) restores the automatic depth:
// kDefaultGemvDepth, the fastest on an H100 over Llama-3-8B's projections in the rows layout, and 3 for weights in
// the gemv_tiles layout with at least 4 tiles of 16 rows an SM (gate / up there; tools/bench_gpu times each depth;
// deeper ones take more registers). gemv_pipeline_depth(): the depth set, 0 for automatic.
constexpr int kMaxGemvDepth = 4;
constexpr int kDefaultGemvDepth = 2;
void set_gemv_pipeline_depth(int depth);
int gemv_pipeline_depth();
// The warps of a block of the tensor-core kernel: at most `warps` (4 ... kMaxGemvBlockWarps), or with
// set_gemv_block_warps(0) automatically: at most 8 where the weight has a tile of 16 rows or more per SM (two
// blocks then share an SM, and while one waits at its barrier at a tile's end the other runs: on an H100 5-10 %
// faster on the large projections of Llama-3-8B), else at most 16. A block's warps share the chunks of a tile and
// add their sums at the tile's end, so this changes the order of the additions (sums within the kernel's bound,
// not bit for bit the same). gemv_block_warps() is the setting, 0 for automatic.
constexpr int kMaxGemvBlockWarps = 16;
void set_gemv_block_warps(int warps);
int gemv_block_warps();
// Programmatic dependent launch of the tensor-core kernel (sm_90+; on by default). A GEMV then may start as the
// kernel before it in the stream finishes: its blocks read their first steps of the weight and build their tables,
// and wait for that kernel only before they read x or write y. Between back-to-back GEMVs that hides one's start
// behind the other's last tiles, a fixed cost of a few microseconds per call: on an H100 a Llama-3-8B layer's seven
// GEMVs (one row of x) took 71.5 us instead of 83.4 (2026-11-26, seventh session). The sums are the same bit for
// bit; set_gemv_overlap(false) launches each on its own. The contract: the kernel just before a GEMV in its stream
// does not write the GEMV's weight (a weight is written when it is quantized or copied, and used long after).
void set_gemv_overlap(bool on);
bool gemv_overlap();

// The matmul of training shapes (m tokens, large) on tensor cores, fp16 / bf16, W dequantized tile by tile into
// shared memory (kernels/four_bit_matmul.cu): each weight value is what dequantize_4bit writes, products add up in
// fp32 and each output is rounded to `dtype` once.
//   forward:  c (m, rows) = a (m, cols) . W^T   (x -> y)
//   backward: c (m, cols) = a (m, rows) . W     (dy -> dx)
// a and c are contiguous. matmul_4bit_unfit says why the kernel cannot take a weight and pointers (nullptr when
// it can): fp32, columns not a multiple of 32 or rows of 8, misaligned pointers, a GPU older than sm_80.
// `tile` is a block's tile of c (rows x columns); `automatic` picks one by the shape and the GPU's SM count (among
// the mma.sync tilings, for now). The *_wgmma tilings are Hopper's warpgroup MMA (sm_90a): they need an sm_90 GPU
// and a build with sm_90a code (matmul_4bit_wgmma_available; else matmul_4bit says so and launches nothing);
// m128n128_split_k_wgmma is 128 x 128 with 16 warps a block, two halves of 8 taking alternate k tiles and adding
// their sums at the end. automatic_wgmma takes 128 x 128 where that gives every SM two blocks, split k where it
// gives at most one, else 128 x 64 (twice the blocks).
enum class MatmulPass { forward, backward };
enum class MatmulTile {
  automatic,
  m256n128,
  m128n256,
  m128n128,
  m64n128,
  m64n64,
  automatic_wgmma,
  m128n128_wgmma,
  m128n64_wgmma,
  m128n128_split_k_wgmma
};
const char* matmul_4bit_unfit(const FourBitWeight& weight, const void* a, const void* c, DType dtype);
bool matmul_4bit_wgmma_available();
// The tiling automatic_wgmma takes for a product of m rows (by the shape and the GPU's SM count).
MatmulTile matmul_4bit_wgmma_tile(const FourBitWeight& weight, int64_t m, MatmulPass pass);
const char* matmul_4bit(const FourBitWeight& weight, const DynamicMap* map, const void* a, int64_t m, void* c,
                        DType dtype, MatmulPass pass, void* stream, MatmulTile tile = MatmulTile::automatic);

// ---- fused pieces of a decoder layer (kernels/fused_ops.cu) -------------------------------------------------
// Each gives what the chain of libtorch ops it replaces gives (src/layer_composites.cpp: rms_norm_composite,
// swiglu_composite, apply_rotary_composite): fp32 arithmetic, rounded to `dtype` where each op of the chain
// rounds. Tensors are contiguous unless said otherwise.

// LlamaRMSNorm over the rows of x (rows, cols) with weight (cols,): out = weight * round(x * r) with
// r = rsqrt(mean(x^2) + eps) per row in fp32, also written to `rstd` (rows,) unless it is nullptr.
const char* rms_norm_forward(const void* x, const void* weight, int64_t rows, int64_t cols, float eps, void* out,
                             float* rstd, DType dtype, void* stream);
// dx from dout (rows, cols), x and the forward's rstd. The weight gets no gradient: it is frozen (LoRA).
const char* rms_norm_backward(const void* dout, const void* x, const void* weight, const float* rstd, int64_t rows,
                              int64_t cols, void* dx, DType dtype, void* stream);

// SwiGLU over n elements: out = silu(gate) * up; its backward writes dgate and dup from dout.
const char* swiglu_forward(const void* gate, const void* up, int64_t n, void* out, DType dtype, void* stream);
const char* swiglu_backward(const void* dout, const void* gate, const void* up, int64_t n, void* dgate, void* dup,
                            DType dtype, void* stream);

// A (batch, heads, tokens, dim) tensor whose last dimension is contiguous: element (b, h, t, d) lies at
// b * batch + h * head + t * token + d elements from its start.
struct HeadStrides {
  int64_t batch = 0, head = 0, token = 0;
};
struct RotaryShape {
  int64_t batch = 0, heads = 0, tokens = 0, dim = 0;  // dim even
};
// Rotary embedding of q or k: out = x * cos + rotate_half(x) * sin, rotate_half(x) = (-x[dim/2:], x[:dim/2]),
// with cos and sin (tokens, dim) contiguous. x and out may have any strides of that form.
const char* rotary_forward(const void* x, HeadStrides x_strides, const void* cos, const void* sin, RotaryShape shape,
                           void* out, HeadStrides out_strides, DType dtype, void* stream);
// dx from dout: dout * cos + rotate_half^T(dout * sin).
const char* rotary_backward(const void* dout, HeadStrides dout_strides, const void* cos, const void* sin,
                            RotaryShape shape, void* dx, HeadStrides dx_strides, DType dtype, void* stream);

}  // namespace autotrain::cuda
