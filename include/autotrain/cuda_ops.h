// The CUDA kernels of kernels/ as libtorch operations: on 4-bit weights stored on a CUDA device, with the
// autograd function that training uses for a quantized frozen layer on the GPU, and the fused pieces of a
// decoder layer (RMSNorm, SwiGLU, rotary embedding) as autograd functions. In a build without CUDA kernels
// (AUTOTRAIN_WITH_CUDA unset) cuda_kernels_built() and the *_supports functions are false and the others
// throw Error.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "autotrain/cuda_kernels.h"
#include "autotrain/quant.h"

namespace autotrain {

bool cuda_kernels_built();

// Whether linear_4bit_cuda takes x: a CUDA tensor in fp32 / fp16 / bf16 with a 2-D 4-bit weight on the
// same device, in a build with the kernels. Otherwise callers fall back to dequantize-then-matmul in libtorch.
bool linear_4bit_cuda_supports(const at::Tensor& x, const Quantized4bit& weight);

// Rows [row_begin, row_end) x columns [col_begin, col_end) of the 2-D weight, dense in `dtype`
// (bit-identical to dequantize_4bit); -1 ends: the last row / column.
at::Tensor dequantize_4bit_cuda(const Quantized4bit& weight, at::ScalarType dtype, int64_t row_begin = 0,
                                int64_t row_end = -1, int64_t col_begin = 0, int64_t col_end = -1);

// x (m, in) -> (m, out) for m <= 8: a GEMV kernel (see cuda::gemv_4bit), each packed byte read once.
at::Tensor gemv_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight,
                          cuda::GemvKernel kernel = cuda::GemvKernel::automatic);

// x (m, in) -> ys[i] (m, out_i) for m <= 8 and up to cuda::kMaxGemvGroup weights of `in` columns on x's device: one
// grouped GEMV launch where the kernel takes them together, one each otherwise (see cuda::gemv_4bit_group).
std::vector<at::Tensor> gemv_4bit_group_cuda(const at::Tensor& x, const std::vector<const Quantized4bit*>& weights);

// Whether a decoder layer's GEMVs of one input (q, k and v; gate and up, without LoRA) go through one grouped launch
// (FrozenLinear::forward_all): on unless AUTOTRAIN_GEMV_GROUP=0. On an H100 a Llama-3-8B layer's seven GEMVs took
// 67.0 us grouped against 72.3 one by one, 53.7 against 60.0 on tiled weights (tools/bench_gpu gemv, seventeenth
// session). set_gemv_grouping overrides the variable (tests, benchmarks). Without CUDA, off.
bool gemv_grouping();
void set_gemv_grouping(bool on);

// Whether generation puts an int4 model's weights in the gemv_tiles layout (cuda_kernels.h) at load, for the
// tensor-core GEMV to read each lane's MMA operands with one 16-byte load (CausalLM, ModelOptions::gemv_tiles):
// on unless AUTOTRAIN_GEMV_TILES=0. On an H100 each Llama-3-8B projection's GEMV was 11-23 % faster on tiled weights
// at the same depth (gate/up 17.8 -> 15.4 us at one row, down 17.2 -> 13.3), a layer 72.3 -> 60.0 us (tools/bench_gpu
// gemv, seventeenth session). set_gemv_tiles overrides the variable. Without CUDA, off.
bool gemv_tiles();
void set_gemv_tiles(bool on);
// Reorders `weight`'s packed bytes (a 2-D 4-bit weight on a CUDA device) into the gemv_tiles layout where the
// tensor-core GEMV takes it at `dtype` (cuda::gemv_tiles_unfit) and returns true; otherwise leaves it as it is and
// returns false. The dequantization (the prompt's matmul, FrozenLinear::weight) reads either layout.
bool tile_4bit_for_gemv_cuda(Quantized4bit& weight, at::ScalarType dtype);

// The kernels' view of a 2-D 4-bit weight on a CUDA device (pointers into its tensors; also makes that device
// current) and bitsandbytes' dynamic map behind double-quantized statistics: what the launchers of
// cuda_kernels.h take, for callers that launch them directly (tools/bench_gpu).
cuda::FourBitWeight four_bit_kernel_view(const Quantized4bit& weight);
const cuda::DynamicMap* kernel_dynamic_map();

// The same view of a 2-D weight's storage wherever it lies, unchecked: pointers into its tensors, its shape,
// blocksize, code and double-quantization fields. (tests/simt hands host storage to the emulated kernels.)
inline cuda::FourBitWeight four_bit_storage_view(const Quantized4bit& q) {
  cuda::FourBitWeight w;
  w.packed = q.packed.data_ptr<uint8_t>();
  w.rows = q.shape.at(0);
  w.cols = q.shape.at(1);
  w.blocksize = static_cast<int>(q.blocksize);
  w.layout = q.gemv_tiles ? cuda::FourBitLayout::gemv_tiles : cuda::FourBitLayout::rows;
  const auto& code = code_4bit(q.type);
  std::copy(code.begin(), code.end(), w.code);
  if (q.double_quantized) {
    w.nested_codes = q.nested.codes.data_ptr<uint8_t>();
    w.nested_absmax = q.nested.absmax.data_ptr<float>();
    w.nested_blocksize = static_cast<int>(q.nested.blocksize);
    w.offset = q.offset;
  } else {
    w.absmax = q.absmax.data_ptr<float>();
  }
  return w;
}

// The largest slice of the dequantized weight a matmul holds at a time, in bytes: 64 MiB, or
// AUTOTRAIN_DEQUANT_CHUNK_MB. Larger weights are dequantized and multiplied in slices of rows.
int64_t dequantize_chunk_bytes();

// x (..., in) . W^T -> (..., out) and dy (..., out) . W -> (..., in), dequantizing at most `chunk_bytes`
// of W at a time into a scratch slice that cuBLAS (through libtorch) multiplies: slices of rows (output
// features) forward, of columns (input features) backward, so that every output element is one GEMM's
// sum, rounded once.
at::Tensor matmul_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, int64_t chunk_bytes);
at::Tensor matmul_4bit_transposed_cuda(const at::Tensor& dy, const Quantized4bit& weight, int64_t chunk_bytes);

// The same two products on tensor cores with W dequantized tile by tile into shared memory (cuda::matmul_4bit):
// forward a = x (..., in) -> (..., out), backward a = dy (..., out) -> (..., in). fp16 / bf16 only; the
// *_supports check says whether the kernel takes a and the weight (throws Error otherwise).
bool matmul_4bit_fused_supports(const at::Tensor& a, const Quantized4bit& weight, cuda::MatmulPass pass);
at::Tensor matmul_4bit_fused_cuda(const at::Tensor& a, const Quantized4bit& weight, cuda::MatmulPass pass,
                                  cuda::MatmulTile tile = cuda::MatmulTile::automatic);

// Which training (m > 8 rows) uses: AUTOTRAIN_NF4_MATMUL=fused picks the fused kernel where it applies (its tiling
// by the shape), =wgmma its Hopper tilings (cuda::MatmulTile::automatic_wgmma) where they apply (an sm_90 GPU and
// sm_90a code); the default is the sliced dequantize-then-cuBLAS matmul, the one measured faster so far (README, GPU
// figures). What the choice does not take goes to the sliced matmul. set_training_matmul overrides the variable
// (tests and tools/bench_gpu compare them).
enum class TrainingMatmul { sliced, fused, wgmma };
TrainingMatmul training_matmul();
void set_training_matmul(TrainingMatmul choice);

// y = x W^T + bias with autograd (the gradient flows to x only): GEMV for m <= 8 rows of x, else the
// training matmul (training_matmul()); the backward is dy . W by the same. `weight` must outlive the graph.
at::Tensor linear_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, const at::Tensor& bias);

// ---- fused pieces of a decoder layer ------------------------------------------------------------------------
// What rms_norm, swiglu and apply_rotary (include/autotrain/model.h) run on a GPU: one kernel forward and one
// backward each (kernels/fused_ops.cu) in place of a chain of libtorch ops, with the chain's roundings. Each
// *_supports says whether the fused op takes the inputs; the callers take the chain (the composite) otherwise.

// x (..., C) in fp32 / fp16 / bf16 on a CUDA device; weight (C,) contiguous, of x's dtype, on its device, and
// frozen: the fused backward gives x its gradient only (a weight that requires grad takes the composite).
bool rms_norm_cuda_supports(const at::Tensor& x, const at::Tensor& weight);
at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps);

// gate, up: contiguous, of one shape and dtype (fp32 / fp16 / bf16), on one CUDA device.
bool swiglu_cuda_supports(const at::Tensor& gate, const at::Tensor& up);
at::Tensor swiglu_cuda(const at::Tensor& gate, const at::Tensor& up);

// x (B, H, T, D), D even, laid out as attention makes q and k: the transpose(1, 2) view of a contiguous
// (B, T, H, D) buffer; cos, sin (1, 1, T, D) contiguous, of x's dtype, on its device, without gradient. The
// result has the same layout (a view of a new (B, T, H, D) buffer): no copy either way.
bool rotary_cuda_supports(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor rotary_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace autotrain
