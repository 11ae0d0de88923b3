// Fused pieces of a Llama decoder layer on the GPU, forward and backward: RMSNorm, SwiGLU and the rotary
// embedding. Each replaces a chain of small libtorch kernels; the chain itself is the reference
// (rms_norm_composite, swiglu_composite, apply_rotary_composite in src/layer_composites.cpp), and
// tests/cuda_fused_ops_test.cpp holds these kernels to it on the GPU.
//
// Rounding follows the composites step by step. A libtorch op on fp16 / bf16 tensors computes in fp32 and
// rounds its result to the tensor's dtype T; these kernels round to T exactly where such an op ends
// (round_to<T>), and chain fp32 operations with __fmul_rn / __fadd_rn where libtorch runs them as separate
// kernels, so that nvcc cannot contract them into an FMA the composite does not have. What still differs:
// the order of RMSNorm's fp32 sums (the mean of squares forward, a dot product backward).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "autotrain/cuda_kernels.h"
#include "kernel_common.cuh"

namespace autotrain::cuda {

namespace {

// v rounded to T and back to fp32: what a libtorch op on T tensors stores and the next op reads.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// Elements of T in one 16-byte access.
template <typename T>
constexpr int kPack = static_cast<int>(16 / sizeof(T));

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// W consecutive elements to fp32: one 16-byte load when W elements are 16 bytes (the launchers only choose
// that width for 16-byte aligned addresses), else W scalar loads.
template <typename T, int W>
__device__ __forceinline__ void load(const T* src, float (&dst)[W]) {
  if constexpr (W * sizeof(T) == 16) {
    alignas(16) T v[W];
    *reinterpret_cast<uint4*>(v) = *reinterpret_cast<const uint4*>(src);
#pragma unroll
    for (int k = 0; k < W; ++k) dst[k] = to_float(v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < W; ++k) dst[k] = to_float(src[k]);
  }
}

// W fp32 values rounded to T and stored, as `load` reads them.
template <typename T, int W>
__device__ __forceinline__ void store(T* dst, const float (&src)[W]) {
  alignas(16) T v[W];
#pragma unroll
  for (int k = 0; k < W; ++k) v[k] = from_float<T>(src[k]);
  if constexpr (W * sizeof(T) == 16) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
  } else {
#pragma unroll
    for (int k = 0; k < W; ++k) dst[k] = v[k];
  }
}

// ---- RMSNorm ---------------------------------------------------------------------------------------------

// The sum of `value` over the block, in every thread. blockDim.x is a multiple of 32 (full warps for the
// shuffles) and at most 1024; `scratch` holds one float per warp. The order is fixed: results repeat exactly.
__device__ __forceinline__ float block_sum(float value, float* scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // every warp has read the previous row's partial sums
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = lane < static_cast<int>(blockDim.x / 32) ? scratch[lane] : 0.0f;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// x, out (rows, cols); weight (cols,). One block per row (grid-stride over rows), W elements per access (W
// divides cols). As the composite: h = float(x); r = rsqrt(mean(h * h) + eps); out = weight * round_T(h * r),
// the mean being the sum times rows / (rows * cols) as libtorch's MeanOps, and rsqrtf as its rsqrt kernel.
template <typename T, int W>
__global__ void rms_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ weight, int64_t rows,
                                        int64_t cols, float eps, float mean_factor, T* __restrict__ out,
                                        float* __restrict__ rstd) {
  __shared__ float scratch[32];
  const int64_t first = int64_t(threadIdx.x) * W, step = int64_t(blockDim.x) * W;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    float squares = 0.0f;
    for (int64_t c = first; c < cols; c += step) {
      float h[W];
      load<T, W>(xr + c, h);
#pragma unroll
      for (int k = 0; k < W; ++k) squares = __fadd_rn(squares, __fmul_rn(h[k], h[k]));  // pow(2) rounds each
    }
    const float r = rsqrtf(__fadd_rn(__fmul_rn(block_sum(squares, scratch), mean_factor), eps));
    if (rstd != nullptr && threadIdx.x == 0) rstd[row] = r;
    T* outr = out + row * cols;
    for (int64_t c = first; c < cols; c += step) {
      float h[W], w[W], o[W];
      load<T, W>(xr + c, h);
      load<T, W>(weight + c, w);
#pragma unroll
      for (int k = 0; k < W; ++k) o[k] = __fmul_rn(w[k], round_to<T>(__fmul_rn(h[k], r)));
      store<T, W>(outr + c, o);
    }
  }
}

// dx of the forward above from dout, x and its r (rows,), as autograd runs the composite's backward:
//   g = round_T(dout * weight)                         (mul's backward, then the cast back to fp32: exact)
//   dot = sum(g * h)                                    (h * r's backward to r, summed over the row)
//   coef = ((-0.5 * dot) * ((r * r) * r)) * (1 / cols)  (rsqrt's backward, then mean's: / cols as * 1/cols)
//   dx = round_T(g * r + coef * (2 * h))                (h * r's backward to h, plus pow(2)'s)
template <typename T, int W>
__global__ void rms_norm_backward_kernel(const T* __restrict__ dout, const T* __restrict__ x,
                                         const T* __restrict__ weight, const float* __restrict__ rstd, int64_t rows,
                                         int64_t cols, float inv_cols, T* __restrict__ dx) {
  __shared__ float scratch[32];
  const int64_t first = int64_t(threadIdx.x) * W, step = int64_t(blockDim.x) * W;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* dr = dout + row * cols;
    const T* xr = x + row * cols;
    const float r = rstd[row];
    float dot = 0.0f;
    for (int64_t c = first; c < cols; c += step) {
      float d[W], h[W], w[W];
      load<T, W>(dr + c, d);
      load<T, W>(xr + c, h);
      load<T, W>(weight + c, w);
#pragma unroll
      for (int k = 0; k < W; ++k) dot = __fadd_rn(dot, __fmul_rn(round_to<T>(__fmul_rn(d[k], w[k])), h[k]));
    }
    dot = block_sum(dot, scratch);
    const float coef = __fmul_rn(__fmul_rn(__fmul_rn(-0.5f, dot), __fmul_rn(__fmul_rn(r, r), r)), inv_cols);
    T* dxr = dx + row * cols;
    for (int64_t c = first; c < cols; c += step) {
      float d[W], h[W], w[W], o[W];
      load<T, W>(dr + c, d);
      load<T, W>(xr + c, h);
      load<T, W>(weight + c, w);
#pragma unroll
      for (int k = 0; k < W; ++k) {
        const float g = round_to<T>(__fmul_rn(d[k], w[k]));
        o[k] = __fadd_rn(__fmul_rn(g, r), __fmul_rn(coef, __fmul_rn(2.0f, h[k])));
      }
      store<T, W>(dxr + c, o);
    }
  }
}

struct RowLaunch {
  unsigned blocks, threads;
};

// Threads per row: enough for one access each on short rows (whole warps), 256 on long ones; blocks: one per
// row up to what the device holds at once (2048 threads per SM), then the kernels stride over rows.
RowLaunch row_launch(int64_t rows, int64_t cols, int width) {
  const int64_t accesses = (cols + width - 1) / width;
  const int64_t threads = std::clamp<int64_t>((accesses + 31) / 32 * 32, 32, 256);
  const int64_t blocks = std::min<int64_t>(rows, multiprocessors() * (2048 / threads));
  return {static_cast<unsigned>(std::max<int64_t>(blocks, 1)), static_cast<unsigned>(threads)};
}

// ---- SwiGLU ----------------------------------------------------------------------------------------------

// silu(g) in fp32 as libtorch's silu kernel computes it: g / (1 + exp(-g)), with expf (not the fast __expf).
__device__ __forceinline__ float silu(float g) { return __fdiv_rn(g, __fadd_rn(1.0f, expf(-g))); }

// gate, up, out (n,) as `packs` runs of W elements: out = round_T(round_T(silu(gate)) * up).
template <typename T, int W>
__global__ void swiglu_forward_kernel(const T* __restrict__ gate, const T* __restrict__ up, int64_t packs,
                                      T* __restrict__ out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += int64_t(gridDim.x) * blockDim.x) {
    float g[W], u[W], o[W];
    load<T, W>(gate + i * W, g);
    load<T, W>(up + i * W, u);
#pragma unroll
    for (int k = 0; k < W; ++k) o[k] = __fmul_rn(round_to<T>(silu(g[k])), u[k]);
    store<T, W>(out + i * W, o);
  }
}

// The gradients of silu(gate) * up: mul's backward gives dup = round_T(dout * silu_T(gate)) and the
// gradient of silu's output round_T(dout * up), which silu's backward turns into dgate.
template <typename T, int W>
__global__ void swiglu_backward_kernel(const T* __restrict__ dout, const T* __restrict__ gate, const T* __restrict__ up,
                                       int64_t packs, T* __restrict__ dgate, T* __restrict__ dup) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < packs; i += int64_t(gridDim.x) * blockDim.x) {
    float d[W], g[W], u[W], dg[W], du[W];
    load<T, W>(dout + i * W, d);
    load<T, W>(gate + i * W, g);
    load<T, W>(up + i * W, u);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      du[k] = __fmul_rn(d[k], round_to<T>(silu(g[k])));
      const float dy = round_to<T>(__fmul_rn(d[k], u[k]));
      // silu_backward's expression as ATen writes it (ActivationSiluKernel.cu), left to nvcc to compile as
      // it compiles ATen's (one kernel there too, so the same contractions)
      const float s = 1.0f / (1.0f + expf(-g[k]));
      dg[k] = dy * s * (1.0f + g[k] * (1.0f - s));
    }
    store<T, W>(dgate + i * W, dg);
    store<T, W>(dup + i * W, du);
  }
}

// ---- rotary embedding ------------------------------------------------------------------------------------

// in, out (B, H, T, D) at their strides (the last dimension contiguous); cos, sin (T, D) contiguous. One item
// is W elements of the first half of a row (b, h, t) and their W partners D/2 further; rows are numbered
// (b, t, h), the memory order of the (B, T, H, D) buffers the q / k heads are views of. With x1, x2 the halves
// of the input and c1, c2, s1, s2 those of cos and sin, every product rounded to T as its own libtorch op:
//   forward  (x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1)):
//     out1 = x1 * c1 + (-x2) * s1        out2 = x2 * c2 + x1 * s2
//   backward (its transpose: the gradient of rotate_half's output goes to x's other half, negated for x2):
//     dx1 = d1 * c1 + d2 * s2            dx2 = d2 * c2 + (-d1) * s1
template <typename T, int W, bool kBackward>
__global__ void rotary_kernel(const T* __restrict__ in, HeadStrides in_strides, const T* __restrict__ cos,
                              const T* __restrict__ sin, int64_t heads, int64_t tokens, int64_t half, int64_t items,
                              T* __restrict__ out, HeadStrides out_strides) {
  const int64_t per_row = half / W;
  const bool narrow = items <= UINT32_MAX;  // 32-bit divisions where the counts fit (several times cheaper)
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; item < items;
       item += int64_t(gridDim.x) * blockDim.x) {
    int64_t row, b, t, h;
    if (narrow) {
      const uint32_t r = uint32_t(item) / uint32_t(per_row);
      const uint32_t bt = r / uint32_t(heads), b32 = bt / uint32_t(tokens);
      row = r;
      h = r - bt * uint32_t(heads);
      b = b32;
      t = bt - b32 * uint32_t(tokens);
    } else {
      row = item / per_row;
      const int64_t bt = row / heads;
      h = row - bt * heads;
      b = bt / tokens;
      t = bt - b * tokens;
    }
    const int64_t i = (item - row * per_row) * W;
    const T* src = in + b * in_strides.batch + h * in_strides.head + t * in_strides.token + i;
    T* dst = out + b * out_strides.batch + h * out_strides.head + t * out_strides.token + i;
    const int64_t angle = t * 2 * half + i;
    float a1[W], a2[W], c1[W], c2[W], s1[W], s2[W], o1[W], o2[W];
    load<T, W>(src, a1);
    load<T, W>(src + half, a2);
    load<T, W>(cos + angle, c1);
    load<T, W>(cos + angle + half, c2);
    load<T, W>(sin + angle, s1);
    load<T, W>(sin + angle + half, s2);
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const float p1 = kBackward ? __fmul_rn(a2[k], s2[k]) : __fmul_rn(-a2[k], s1[k]);
      const float p2 = kBackward ? __fmul_rn(-a1[k], s1[k]) : __fmul_rn(a1[k], s2[k]);
      o1[k] = __fadd_rn(round_to<T>(__fmul_rn(a1[k], c1[k])), round_to<T>(p1));
      o2[k] = __fadd_rn(round_to<T>(__fmul_rn(a2[k], c2[k])), round_to<T>(p2));
    }
    store<T, W>(dst, o1);
    store<T, W>(dst + half, o2);
  }
}

bool strides_multiple_of(const HeadStrides& s, int width) {
  return s.batch % width == 0 && s.head % width == 0 && s.token % width == 0;
}

template <bool kBackward>
const char* rotary(const void* in, HeadStrides in_strides, const void* cos, const void* sin, RotaryShape shape,
                   void* out, HeadStrides out_strides, DType dtype, void* stream) {
  if (shape.batch < 0 || shape.heads < 0 || shape.tokens < 0 || shape.dim <= 0 || shape.dim % 2 != 0)
    return "rotary: the head dimension must be even and positive";
  if (shape.batch == 0 || shape.heads == 0 || shape.tokens == 0) return nullptr;
  const int64_t half = shape.dim / 2, rows = shape.batch * shape.heads * shape.tokens;
  auto s = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int P = kPack<T>;
    const bool vector = half % P == 0 && strides_multiple_of(in_strides, P) && strides_multiple_of(out_strides, P) &&
                        aligned16(in) && aligned16(out) && aligned16(cos) && aligned16(sin);
    const int64_t items = rows * (vector ? half / P : half);
    const unsigned threads = 256, blocks = grid_for(items, threads);
    const T *x = static_cast<const T*>(in), *c = static_cast<const T*>(cos), *n = static_cast<const T*>(sin);
    T* o = static_cast<T*>(out);
    if (vector)
      launch_kernel(rotary_kernel<T, P, kBackward>, blocks, threads, 0, s, x, in_strides, c, n, shape.heads,
                    shape.tokens, half, items, o, out_strides);
    else
      launch_kernel(rotary_kernel<T, 1, kBackward>, blocks, threads, 0, s, x, in_strides, c, n, shape.heads,
                    shape.tokens, half, items, o, out_strides);
  });
  return launch_status();
}

}  // namespace

const char* rms_norm_forward(const void* x, const void* weight, int64_t rows, int64_t cols, float eps, void* out,
                             float* rstd, DType dtype, void* stream) {
  if (rows < 0 || cols <= 0) return "rms_norm_forward: rows must be >= 0 and cols > 0";
  if (rows == 0) return nullptr;
  // libtorch's mean: the sum times num_output_elements / numel, a float divided by an int64 (so in float)
  const float mean_factor = static_cast<float>(rows) / static_cast<float>(rows * cols);
  auto s = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int P = kPack<T>;
    const T *xt = static_cast<const T*>(x), *wt = static_cast<const T*>(weight);
    T* ot = static_cast<T*>(out);
    const bool vector = cols % P == 0 && aligned16(x) && aligned16(weight) && aligned16(out);
    const RowLaunch l = row_launch(rows, cols, vector ? P : 1);
    if (vector)
      launch_kernel(rms_norm_forward_kernel<T, P>, l.blocks, l.threads, 0, s, xt, wt, rows, cols, eps, mean_factor, ot,
                    rstd);
    else
      launch_kernel(rms_norm_forward_kernel<T, 1>, l.blocks, l.threads, 0, s, xt, wt, rows, cols, eps, mean_factor, ot,
                    rstd);
  });
  return launch_status();
}

const char* rms_norm_backward(const void* dout, const void* x, const void* weight, const float* rstd, int64_t rows,
                              int64_t cols, void* dx, DType dtype, void* stream) {
  if (rows < 0 || cols <= 0) return "rms_norm_backward: rows must be >= 0 and cols > 0";
  if (rows == 0) return nullptr;
  // mean's backward divides by cols, a CPU scalar, which libtorch's CUDA division turns into * (1 / cols)
  const float inv_cols = static_cast<float>(1.0 / static_cast<double>(cols));
  auto s = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int P = kPack<T>;
    const T *dt = static_cast<const T*>(dout), *xt = static_cast<const T*>(x), *wt = static_cast<const T*>(weight);
    T* gt = static_cast<T*>(dx);
    const bool vector = cols % P == 0 && aligned16(dout) && aligned16(x) && aligned16(weight) && aligned16(dx);
    const RowLaunch l = row_launch(rows, cols, vector ? P : 1);
    if (vector)
      launch_kernel(rms_norm_backward_kernel<T, P>, l.blocks, l.threads, 0, s, dt, xt, wt, rstd, rows, cols, inv_cols,
                    gt);
    else
      launch_kernel(rms_norm_backward_kernel<T, 1>, l.blocks, l.threads, 0, s, dt, xt, wt, rstd, rows, cols, inv_cols,
                    gt);
  });
  return launch_status();
}

const char* swiglu_forward(const void* gate, const void* up, int64_t n, void* out, DType dtype, void* stream) {
  if (n < 0) return "swiglu_forward: negative size";
  if (n == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int P = kPack<T>;
    const T *g = static_cast<const T*>(gate), *u = static_cast<const T*>(up);
    T* o = static_cast<T*>(out);
    const bool vector = n % P == 0 && aligned16(gate) && aligned16(up) && aligned16(out);
    const int64_t packs = vector ? n / P : n;
    const unsigned threads = 256, blocks = grid_for(packs, threads);
    if (vector)
      launch_kernel(swiglu_forward_kernel<T, P>, blocks, threads, 0, s, g, u, packs, o);
    else
      launch_kernel(swiglu_forward_kernel<T, 1>, blocks, threads, 0, s, g, u, packs, o);
  });
  return launch_status();
}

const char* swiglu_backward(const void* dout, const void* gate, const void* up, int64_t n, void* dgate, void* dup,
                            DType dtype, void* stream) {
  if (n < 0) return "swiglu_backward: negative size";
  if (n == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  with_element_type(dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int P = kPack<T>;
    const T *d = static_cast<const T*>(dout), *g = static_cast<const T*>(gate), *u = static_cast<const T*>(up);
    T *dg = static_cast<T*>(dgate), *du = static_cast<T*>(dup);
    const bool vector = n % P == 0 && aligned16(dout) && aligned16(gate) && aligned16(up) && aligned16(dgate) &&
                        aligned16(dup);
    const int64_t packs = vector ? n / P : n;
    const unsigned threads = 256, blocks = grid_for(packs, threads);
    if (vector)
      launch_kernel(swiglu_backward_kernel<T, P>, blocks, threads, 0, s, d, g, u, packs, dg, du);
    else
      launch_kernel(swiglu_backward_kernel<T, 1>, blocks, threads, 0, s, d, g, u, packs, dg, du);
  });
  return launch_status();
}

const char* rotary_forward(const void* x, HeadStrides x_strides, const void* cos, const void* sin, RotaryShape shape,
                           void* out, HeadStrides out_strides, DType dtype, void* stream) {
  return rotary<false>(x, x_strides, cos, sin, shape, out, out_strides, dtype, stream);
}

const char* rotary_backward(const void* dout, HeadStrides dout_strides, const void* cos, const void* sin,
                            RotaryShape shape, void* dx, HeadStrides dx_strides, DType dtype, void* stream) {
  return rotary<true>(dout, dout_strides, cos, sin, shape, dx, dx_strides, dtype, stream);
}

}  // namespace autotrain::cuda
