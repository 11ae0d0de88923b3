#include "autotrain/cuda_ops.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "autotrain/cuda_kernels.h"
#include "autotrain/error.h"

namespace autotrain {

#ifdef AUTOTRAIN_WITH_CUDA

namespace {

void check(const char* problem, const char* what) {
  if (problem != nullptr) throw Error(std::string(what) + ": " + problem);
}

cuda::DType kernel_dtype(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return cuda::DType::f32;
    case at::kHalf: return cuda::DType::f16;
    case at::kBFloat16: return cuda::DType::bf16;
    default: throw Error(std::string("4-bit CUDA kernels: no kernel for ") + c10::toString(dtype));
  }
}

}  // namespace

cuda::FourBitWeight four_bit_kernel_view(const Quantized4bit& q) {
  if (q.shape.size() != 2) throw Error("4-bit CUDA kernels: the weight must be 2-D");
  if (!q.packed.is_cuda() || !q.packed.is_contiguous()) throw Error("4-bit CUDA kernels: the weight is not on a CUDA device");
  check(cuda::use_device(q.packed.get_device()), "4-bit CUDA kernels");
  cuda::FourBitWeight w;
  w.packed = q.packed.data_ptr<uint8_t>();
  w.rows = q.shape[0];
  w.cols = q.shape[1];
  w.blocksize = static_cast<int>(q.blocksize);
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

const cuda::DynamicMap* kernel_dynamic_map() {
  static const cuda::DynamicMap map = [] {
    cuda::DynamicMap m{};
    const auto& values = dynamic_map_8bit();
    std::copy(values.begin(), values.end(), m.values);
    return m;
  }();
  return &map;
}

namespace {

// y = x W^T: GEMV for a few rows, else the sliced matmul; dx = dy W in the backward. (The bias is added
// outside: an undefined tensor cannot be an input of a custom autograd function.)
struct Linear4bit : public torch::autograd::Function<Linear4bit> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const Quantized4bit* weight) {
    ctx->saved_data["weight"] = reinterpret_cast<int64_t>(weight);
    const int64_t in = x.size(-1), rows = x.numel() / std::max<int64_t>(in, 1);
    if (rows >= 1 && rows <= cuda::kMaxGemvRows) {
      std::vector<int64_t> shape = x.sizes().vec();
      shape.back() = weight->shape[0];
      return gemv_4bit_cuda(x.reshape({rows, in}), *weight).view(shape);
    }
    return matmul_4bit_cuda(x, *weight, dequantize_chunk_bytes());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* weight = reinterpret_cast<const Quantized4bit*>(ctx->saved_data["weight"].toInt());
    return {matmul_4bit_transposed_cuda(grads[0], *weight, dequantize_chunk_bytes()), at::Tensor()};
  }
};

// How many of `count` rows (or columns) of `other` elements each go in a slice of at most `chunk_bytes`:
// whole multiples of 128 (cuBLAS tiles; also keeps column slices 8-aligned) unless all fit.
int64_t slice_of(int64_t count, int64_t other, int64_t element_size, int64_t chunk_bytes) {
  int64_t fit = std::max<int64_t>(1, chunk_bytes / std::max<int64_t>(1, other * element_size));
  if (fit >= count) return count;
  return std::max<int64_t>(std::min<int64_t>(128, count), fit / 128 * 128);
}

// Fills `out` (rows, columns) slice by slice of `step` columns: multiply(first, last, columns) writes columns
// [first, last) into the view `columns` (cuBLAS writes a column slice in place). Both matmuls below slice
// their output's columns: output features forward, input features backward.
template <typename Multiply>
void by_column_slices(const at::Tensor& out, int64_t step, Multiply multiply) {
  const int64_t count = out.size(1);
  for (int64_t first = 0; first < count; first += step) {
    const int64_t last = std::min(count, first + step);
    at::Tensor columns = out.narrow(1, first, last - first);
    multiply(first, last, columns);
  }
}

}  // namespace

bool cuda_kernels_built() { return true; }

bool linear_4bit_cuda_supports(const at::Tensor& x, const Quantized4bit& weight) {
  const auto dtype = x.scalar_type();
  return x.is_cuda() && (dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16) &&
         weight.shape.size() == 2 && weight.packed.defined() && weight.packed.is_cuda() &&
         weight.packed.get_device() == x.get_device() && x.size(-1) == weight.shape[1];
}

at::Tensor dequantize_4bit_cuda(const Quantized4bit& weight, at::ScalarType dtype, int64_t row_begin, int64_t row_end,
                                int64_t col_begin, int64_t col_end) {
  cuda::FourBitWeight w = four_bit_kernel_view(weight);
  if (row_end < 0) row_end = w.rows;
  if (col_end < 0) col_end = w.cols;
  at::Tensor out = at::empty({row_end - row_begin, col_end - col_begin}, weight.packed.options().dtype(dtype));
  check(cuda::dequantize_4bit(w, kernel_dynamic_map(), row_begin, row_end, col_begin, col_end, out.data_ptr(),
                              kernel_dtype(dtype), nullptr),
        "dequantize_4bit");
  return out;
}

at::Tensor gemv_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, cuda::GemvKernel kernel) {
  cuda::FourBitWeight w = four_bit_kernel_view(weight);
  at::Tensor input = x.contiguous();
  at::Tensor y = at::empty({input.size(0), w.rows}, input.options());
  check(cuda::gemv_4bit(w, kernel_dynamic_map(), input.data_ptr(), input.size(0), y.data_ptr(),
                        kernel_dtype(input.scalar_type()), nullptr, kernel),
        "gemv_4bit");
  return y;
}

int64_t dequantize_chunk_bytes() {
  static const int64_t bytes = [] {
    const char* value = std::getenv("AUTOTRAIN_DEQUANT_CHUNK_MB");
    const int64_t mb = value != nullptr ? std::atoll(value) : 0;
    return (mb > 0 ? mb : 64) << 20;
  }();
  return bytes;
}

at::Tensor matmul_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, int64_t chunk_bytes) {
  const int64_t out_features = weight.shape.at(0), in = weight.shape.at(1);
  at::Tensor x2 = x.reshape({-1, in});
  at::Tensor y = at::empty({x2.size(0), out_features}, x.options());
  by_column_slices(y, slice_of(out_features, in, x.element_size(), chunk_bytes),
                   [&](int64_t first, int64_t last, at::Tensor& columns) {
                     at::mm_out(columns, x2, dequantize_4bit_cuda(weight, x.scalar_type(), first, last).t());
                   });
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = out_features;
  return y.view(shape);
}

// Sliced by columns of W (input features): each slice of dx is one whole GEMM over all output features,
// so no partial sums are rounded to fp16/bf16 and added (as slicing the rows of W would need).
at::Tensor matmul_4bit_transposed_cuda(const at::Tensor& dy, const Quantized4bit& weight, int64_t chunk_bytes) {
  const int64_t out_features = weight.shape.at(0), in = weight.shape.at(1);
  at::Tensor dy2 = dy.reshape({-1, out_features});
  at::Tensor dx = at::empty({dy2.size(0), in}, dy.options());
  by_column_slices(dx, slice_of(in, out_features, dy.element_size(), chunk_bytes),
                   [&](int64_t first, int64_t last, at::Tensor& columns) {
                     at::Tensor w = dequantize_4bit_cuda(weight, dy.scalar_type(), 0, out_features, first, last);
                     at::mm_out(columns, dy2, w);
                   });
  std::vector<int64_t> shape = dy.sizes().vec();
  shape.back() = in;
  return dx.view(shape);
}

at::Tensor linear_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, const at::Tensor& bias) {
  at::Tensor y = Linear4bit::apply(x, &weight);
  return bias.defined() ? y + bias.to(y.scalar_type()) : y;
}

#else  // no CUDA kernels in this build

namespace {
[[noreturn]] void not_built() { throw Error("this autotrain was built without CUDA kernels (AUTOTRAIN_CUDA=OFF)"); }
}  // namespace

bool cuda_kernels_built() { return false; }
bool linear_4bit_cuda_supports(const at::Tensor&, const Quantized4bit&) { return false; }
at::Tensor dequantize_4bit_cuda(const Quantized4bit&, at::ScalarType, int64_t, int64_t, int64_t, int64_t) {
  not_built();
}
at::Tensor gemv_4bit_cuda(const at::Tensor&, const Quantized4bit&, cuda::GemvKernel) { not_built(); }
cuda::FourBitWeight four_bit_kernel_view(const Quantized4bit&) { not_built(); }
const cuda::DynamicMap* kernel_dynamic_map() { not_built(); }
int64_t dequantize_chunk_bytes() { return 64 << 20; }
at::Tensor matmul_4bit_cuda(const at::Tensor&, const Quantized4bit&, int64_t) { not_built(); }
at::Tensor matmul_4bit_transposed_cuda(const at::Tensor&, const Quantized4bit&, int64_t) { not_built(); }
at::Tensor linear_4bit_cuda(const at::Tensor&, const Quantized4bit&, const at::Tensor&) { not_built(); }

#endif

}  // namespace autotrain
