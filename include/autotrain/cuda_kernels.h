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
};
DeviceInfo device_info(int index);

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
struct FourBitWeight {
  const uint8_t* packed = nullptr;        // ceil(rows * cols / 2) bytes
  const float* absmax = nullptr;          // one per block; nullptr when double quantized
  const uint8_t* nested_codes = nullptr;  // one per block when double quantized
  const float* nested_absmax = nullptr;   // one per nested block when double quantized
  int64_t rows = 0, cols = 0;
  int blocksize = 64, nested_blocksize = 256;
  float offset = 0;
  float code[16] = {};  // the 16 values of the code (NF4 or FP4)
};

// bitsandbytes' dynamic 8-bit map, the values behind nested_codes (passed by value to the kernels).
struct DynamicMap {
  float values[256];
};

// Rows [row_begin, row_end) x columns [col_begin, col_end) of the weight, dense, into `out` (row-major,
// (row_end - row_begin) x (col_end - col_begin), in `dtype`): each value is code * scale in fp32, then
// rounded to `dtype` (what src/quant.cpp does). `map` may be nullptr when the weight is not double quantized.
const char* dequantize_4bit(const FourBitWeight& weight, const DynamicMap* map, int64_t row_begin, int64_t row_end,
                            int64_t col_begin, int64_t col_end, void* out, DType dtype, void* stream);

// y (m, rows) = x (m, cols) . W^T for 1 <= m <= 8 (token generation): each packed byte is read once and
// products accumulate in fp32. x and y are contiguous in `dtype`. Two kernels:
//  - tensor_cores (fp16 / bf16, cols and blocksize multiples of 64, sm_80+): the 16 code values rounded to
//    `dtype` go through the tensor cores, and each block's sum is multiplied by its scale in fp32;
//  - cuda_cores (any shape and dtype): fp32 codes; a lane's sum of code * x over values of one block is
//    multiplied by the block's scale (so each weight value is code * scale, not rounded to `dtype`).
// `automatic` takes the tensor-core kernel for m >= 2 where it applies (for m = 1 the CUDA-core kernel was as
// fast or faster on an H200); asking for the tensor-core kernel where it does not apply is an error.
constexpr int64_t kMaxGemvRows = 8;
enum class GemvKernel { automatic, tensor_cores, cuda_cores };
const char* gemv_4bit(const FourBitWeight& weight, const DynamicMap* map, const void* x, int64_t m, void* y,
                      DType dtype, void* stream, GemvKernel kernel = GemvKernel::automatic);

}  // namespace autotrain::cuda
