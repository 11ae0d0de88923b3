#include "autotrain/cuda_ops.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "autotrain/cuda_kernels.h"
#include "autotrain/error.h"
#include "autotrain/logging.h"

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
    default: throw Error(std::string("CUDA kernels: no kernel for ") + c10::toString(dtype));
  }
}

}  // namespace

cuda::FourBitWeight four_bit_kernel_view(const Quantized4bit& q) {
  if (q.shape.size() != 2) throw Error("4-bit CUDA kernels: the weight must be 2-D");
  if (!q.packed.is_cuda() || !q.packed.is_contiguous()) throw Error("4-bit CUDA kernels: the weight is not on a CUDA device");
  check(cuda::use_device(q.packed.get_device()), "4-bit CUDA kernels");
  return four_bit_storage_view(q);
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

// Whether training's matmul is the fused kernel for this input (AUTOTRAIN_NF4_MATMUL=fused or wgmma, and it
// applies), and with which tiling.
bool fused_matmul_takes(const at::Tensor& a, const Quantized4bit& weight, cuda::MatmulPass pass) {
  const TrainingMatmul choice = training_matmul();
  if (choice == TrainingMatmul::sliced || !matmul_4bit_fused_supports(a, weight, pass)) return false;
  return choice == TrainingMatmul::fused || cuda::matmul_4bit_wgmma_available();
}
cuda::MatmulTile fused_matmul_tile() {
  return training_matmul() == TrainingMatmul::wgmma ? cuda::MatmulTile::automatic_wgmma : cuda::MatmulTile::automatic;
}

// y = x W^T: GEMV for a few rows, else the training matmul; dx = dy W in the backward. (The bias is added
// outside: an undefined tensor cannot be an input of a custom autograd function.)
struct Linear4bit : public torch::autograd::Function<Linear4bit> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const Quantized4bit* weight) {
    ctx->saved_data["weight"] = reinterpret_cast<int64_t>(weight);
    const int64_t in = x.size(-1), rows = x.numel() / std::max<int64_t>(in, 1);
    // A weight in the gemv_tiles layout has the tensor-core GEMV only (fp16 / bf16); in fp32 it takes the matmul.
    const bool gemv_fits = !weight->gemv_tiles || x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
    if (rows >= 1 && rows <= cuda::kMaxGemvRows && gemv_fits) {
      std::vector<int64_t> shape = x.sizes().vec();
      shape.back() = weight->shape[0];
      return gemv_4bit_cuda(x.reshape({rows, in}), *weight).view(shape);
    }
    if (fused_matmul_takes(x, *weight, cuda::MatmulPass::forward))
      return matmul_4bit_fused_cuda(x, *weight, cuda::MatmulPass::forward, fused_matmul_tile());
    return matmul_4bit_cuda(x, *weight, dequantize_chunk_bytes());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* weight = reinterpret_cast<const Quantized4bit*>(ctx->saved_data["weight"].toInt());
    if (fused_matmul_takes(grads[0], *weight, cuda::MatmulPass::backward))
      return {matmul_4bit_fused_cuda(grads[0], *weight, cuda::MatmulPass::backward, fused_matmul_tile()),
              at::Tensor()};
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

namespace {
// x as the GEMV kernels take it: contiguous and, for weights in the gemv_tiles layout (whose tensor-core kernel has
// no fallback for a misaligned x, as the rows layout's automatic choice has), 16-byte aligned.
at::Tensor gemv_input(const at::Tensor& x, bool tiles) {
  at::Tensor input = x.contiguous();
  if (tiles && reinterpret_cast<uintptr_t>(input.data_ptr()) % 16 != 0) input = input.clone();
  return input;
}
}  // namespace

at::Tensor gemv_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, cuda::GemvKernel kernel) {
  cuda::FourBitWeight w = four_bit_kernel_view(weight);
  at::Tensor input = gemv_input(x, weight.gemv_tiles);
  at::Tensor y = at::empty({input.size(0), w.rows}, input.options());
  check(cuda::gemv_4bit(w, kernel_dynamic_map(), input.data_ptr(), input.size(0), y.data_ptr(),
                        kernel_dtype(input.scalar_type()), nullptr, kernel),
        "gemv_4bit");
  return y;
}

std::vector<at::Tensor> gemv_4bit_group_cuda(const at::Tensor& x, const std::vector<const Quantized4bit*>& weights) {
  if (weights.empty() || weights.size() > static_cast<size_t>(cuda::kMaxGemvGroup))
    throw Error("gemv_4bit_group_cuda: 1 ... 3 weights");
  const bool tiles = std::any_of(weights.begin(), weights.end(), [](const Quantized4bit* w) { return w->gemv_tiles; });
  at::Tensor input = gemv_input(x, tiles);
  std::vector<cuda::FourBitWeight> views;
  std::vector<at::Tensor> ys;
  std::vector<void*> outputs;
  for (const Quantized4bit* weight : weights) {
    views.push_back(four_bit_kernel_view(*weight));
    ys.push_back(at::empty({input.size(0), views.back().rows}, input.options()));
    outputs.push_back(ys.back().data_ptr());
  }
  check(cuda::gemv_4bit_group(views.data(), static_cast<int>(views.size()), kernel_dynamic_map(), input.data_ptr(),
                              input.size(0), outputs.data(), kernel_dtype(input.scalar_type()), nullptr),
        "gemv_4bit_group");
  return ys;
}

namespace {
// A switch set by the environment variable `name`: "0" off, "1" on, `otherwise` when unset or anything else.
bool environment_switch(const char* name, bool otherwise) {
  const char* value = std::getenv(name);
  if (value == nullptr) return otherwise;
  const std::string text = value;
  return text == "1" || (text != "0" && otherwise);
}
std::atomic<bool>& gemv_grouping_choice() {
  static std::atomic<bool> choice{environment_switch("AUTOTRAIN_GEMV_GROUP", true)};
  return choice;
}
std::atomic<bool>& gemv_tiles_choice() {
  static std::atomic<bool> choice{environment_switch("AUTOTRAIN_GEMV_TILES", true)};
  return choice;
}
}  // namespace

bool gemv_grouping() { return gemv_grouping_choice().load(std::memory_order_relaxed); }
void set_gemv_grouping(bool on) { gemv_grouping_choice().store(on, std::memory_order_relaxed); }
bool gemv_tiles() { return gemv_tiles_choice().load(std::memory_order_relaxed); }
void set_gemv_tiles(bool on) { gemv_tiles_choice().store(on, std::memory_order_relaxed); }

bool tile_4bit_for_gemv_cuda(Quantized4bit& weight, at::ScalarType dtype) {
  if (weight.gemv_tiles) return true;
  if (dtype != at::kHalf && dtype != at::kBFloat16) return false;
  const cuda::FourBitWeight w = four_bit_kernel_view(weight);
  if (cuda::gemv_tiles_unfit(w, kernel_dtype(dtype)) != nullptr) return false;
  at::Tensor tiled = at::empty({cuda::gemv_tiles_bytes(w.rows, w.cols)}, weight.packed.options());
  check(cuda::tile_4bit_for_gemv(w, tiled.data_ptr(), nullptr), "tile_4bit_for_gemv");
  weight.packed = tiled;
  weight.gemv_tiles = true;
  return true;
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

namespace {
std::atomic<TrainingMatmul>& training_matmul_choice() {
  static std::atomic<TrainingMatmul> choice = [] {
    const char* value = std::getenv("AUTOTRAIN_NF4_MATMUL");
    const std::string name = value != nullptr ? value : "";
    if (name == "fused") return TrainingMatmul::fused;
    if (name == "wgmma") return TrainingMatmul::wgmma;
    if (!name.empty() && name != "sliced")
      log::warn("AUTOTRAIN_NF4_MATMUL=" + name + " is not sliced, fused or wgmma; using the sliced matmul");
    return TrainingMatmul::sliced;
  }();
  return choice;
}
}  // namespace

TrainingMatmul training_matmul() { return training_matmul_choice().load(std::memory_order_relaxed); }
void set_training_matmul(TrainingMatmul choice) { training_matmul_choice().store(choice, std::memory_order_relaxed); }

bool matmul_4bit_fused_supports(const at::Tensor& a, const Quantized4bit& weight, cuda::MatmulPass pass) {
  if (a.dim() < 1 || weight.shape.size() != 2 || !weight.packed.defined() || !a.is_cuda() ||
      !weight.packed.is_cuda() || a.get_device() != weight.packed.get_device())
    return false;
  if (a.size(-1) != weight.shape[pass == cuda::MatmulPass::forward ? 1 : 0]) return false;
  const auto dtype = a.scalar_type();
  if (dtype != at::kHalf && dtype != at::kBFloat16) return false;
  // The kernel gets `a` itself where it is contiguous (a view may start anywhere), else a fresh, aligned copy.
  const void* data = a.is_contiguous() ? a.data_ptr() : nullptr;
  cuda::FourBitWeight w = four_bit_kernel_view(weight);
  return cuda::matmul_4bit_unfit(w, data, nullptr, kernel_dtype(dtype)) == nullptr;
}

at::Tensor matmul_4bit_fused_cuda(const at::Tensor& a, const Quantized4bit& weight, cuda::MatmulPass pass,
                                  cuda::MatmulTile tile) {
  cuda::FourBitWeight w = four_bit_kernel_view(weight);
  const bool forward = pass == cuda::MatmulPass::forward;
  const int64_t in = forward ? w.cols : w.rows, out = forward ? w.rows : w.cols;
  if (a.size(-1) != in) throw Error("matmul_4bit_fused_cuda: the input's last dimension does not fit the weight");
  at::Tensor a2 = a.reshape({-1, in}).contiguous();
  std::vector<int64_t> shape = a.sizes().vec();
  shape.back() = out;
  at::Tensor c = at::empty({a2.size(0), out}, a2.options());
  if (a2.size(0) == 0) return c.view(shape);
  check(cuda::matmul_4bit(w, kernel_dynamic_map(), a2.data_ptr(), a2.size(0), c.data_ptr(),
                          kernel_dtype(a2.scalar_type()), pass, nullptr, tile),
        "matmul_4bit");
  return c.view(shape);
}

at::Tensor linear_4bit_cuda(const at::Tensor& x, const Quantized4bit& weight, const at::Tensor& bias) {
  at::Tensor y = Linear4bit::apply(x, &weight);
  return bias.defined() ? y + bias.to(y.scalar_type()) : y;
}

// ---- fused pieces of a decoder layer ------------------------------------------------------------------------

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool fused_dtype(at::ScalarType dtype) { return dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16; }

bool on_device_of(const at::Tensor& t, const at::Tensor& x) { return t.is_cuda() && t.get_device() == x.get_device(); }

// Where (b, h, t, 0) of a (B, H, T, D) tensor with a contiguous last dimension lies.
cuda::HeadStrides head_strides(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2)}; }

// A new (B, H, T, D) tensor laid out as attention's q and k: the transpose(1, 2) view of a (B, T, H, D) buffer.
at::Tensor empty_heads_like(const at::Tensor& x) {
  return at::empty({x.size(0), x.size(2), x.size(1), x.size(3)}, x.options()).transpose(1, 2);
}

// The forward saves x and r (rows,) fp32 rather than the composite's fp32 copy of x.
struct FusedRmsNorm : public torch::autograd::Function<FusedRmsNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    check(cuda::use_device(x.get_device()), "rms_norm");
    at::Tensor input = x.contiguous();
    const int64_t cols = input.size(-1), rows = input.numel() / cols;
    at::Tensor out = at::empty_like(input);
    at::Tensor rstd = at::empty({rows}, input.options().dtype(at::kFloat));
    check(cuda::rms_norm_forward(input.data_ptr(), weight.data_ptr(), rows, cols, static_cast<float>(eps),
                                 out.data_ptr(), rstd.data_ptr<float>(), kernel_dtype(input.scalar_type()), nullptr),
          "rms_norm");
    ctx->save_for_backward({input, weight, rstd});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight = saved[1], &rstd = saved[2];
    check(cuda::use_device(input.get_device()), "rms_norm backward");
    at::Tensor dout = grads[0].contiguous();
    at::Tensor dx = at::empty_like(input);
    const int64_t cols = input.size(-1), rows = input.numel() / cols;
    check(cuda::rms_norm_backward(dout.data_ptr(), input.data_ptr(), weight.data_ptr(), rstd.data_ptr<float>(), rows,
                                  cols, dx.data_ptr(), kernel_dtype(input.scalar_type()), nullptr),
          "rms_norm backward");
    return {dx, at::Tensor(), at::Tensor()};
  }
};

// Saves gate and up (the composite keeps silu's output as well) and recomputes silu in the backward.
struct FusedSwiglu : public torch::autograd::Function<FusedSwiglu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    check(cuda::use_device(gate.get_device()), "swiglu");
    at::Tensor out = at::empty_like(gate);
    check(cuda::swiglu_forward(gate.data_ptr(), up.data_ptr(), gate.numel(), out.data_ptr(),
                               kernel_dtype(gate.scalar_type()), nullptr),
          "swiglu");
    ctx->save_for_backward({gate, up});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &gate = saved[0], &up = saved[1];
    check(cuda::use_device(gate.get_device()), "swiglu backward");
    at::Tensor dout = grads[0].contiguous();
    at::Tensor dgate = at::empty_like(gate), dup = at::empty_like(up);
    check(cuda::swiglu_backward(dout.data_ptr(), gate.data_ptr(), up.data_ptr(), gate.numel(), dgate.data_ptr(),
                                dup.data_ptr(), kernel_dtype(gate.scalar_type()), nullptr),
          "swiglu backward");
    return {dgate, dup};
  }
};

// Linear in x: the backward needs only cos and sin. The gradient arriving may have any strides (the kernel takes
// them) as long as its last dimension is contiguous.
struct FusedRotary : public torch::autograd::Function<FusedRotary> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    check(cuda::use_device(x.get_device()), "rotary");
    at::Tensor out = empty_heads_like(x);
    const cuda::RotaryShape shape{x.size(0), x.size(1), x.size(2), x.size(3)};
    check(cuda::rotary_forward(x.data_ptr(), head_strides(x), cos.data_ptr(), sin.data_ptr(), shape, out.data_ptr(),
                               head_strides(out), kernel_dtype(x.scalar_type()), nullptr),
          "rotary");
    ctx->save_for_backward({cos, sin});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &cos = saved[0], &sin = saved[1];
    at::Tensor dout = grads[0];
    if (dout.stride(3) != 1) dout = dout.contiguous();
    check(cuda::use_device(dout.get_device()), "rotary backward");
    at::Tensor dx = empty_heads_like(dout);
    const cuda::RotaryShape shape{dout.size(0), dout.size(1), dout.size(2), dout.size(3)};
    check(cuda::rotary_backward(dout.data_ptr(), head_strides(dout), cos.data_ptr(), sin.data_ptr(), shape,
                                dx.data_ptr(), head_strides(dx), kernel_dtype(dout.scalar_type()), nullptr),
          "rotary backward");
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool rms_norm_cuda_supports(const at::Tensor& x, const at::Tensor& weight) {
  return x.is_cuda() && fused_dtype(x.scalar_type()) && x.dim() >= 1 && x.numel() > 0 && weight.dim() == 1 &&
         weight.size(0) == x.size(-1) && weight.scalar_type() == x.scalar_type() && on_device_of(weight, x) &&
         weight.is_contiguous() && !weight.requires_grad();
}

at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return FusedRmsNorm::apply(x, weight, eps);
}

bool swiglu_cuda_supports(const at::Tensor& gate, const at::Tensor& up) {
  return gate.is_cuda() && fused_dtype(gate.scalar_type()) && gate.numel() > 0 && up.sizes() == gate.sizes() &&
         up.scalar_type() == gate.scalar_type() && on_device_of(up, gate) && gate.is_contiguous() &&
         up.is_contiguous();
}

at::Tensor swiglu_cuda(const at::Tensor& gate, const at::Tensor& up) { return FusedSwiglu::apply(gate, up); }

bool rotary_cuda_supports(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!x.is_cuda() || !fused_dtype(x.scalar_type()) || x.dim() != 4 || x.numel() == 0 || x.size(3) % 2 != 0 ||
      !x.transpose(1, 2).is_contiguous())
    return false;
  const std::vector<int64_t> angles{1, 1, x.size(2), x.size(3)};
  for (const at::Tensor* t : {&cos, &sin})
    if (t->scalar_type() != x.scalar_type() || !on_device_of(*t, x) || t->sizes() != at::IntArrayRef(angles) ||
        !t->is_contiguous() || t->requires_grad())
      return false;
  return true;
}

at::Tensor rotary_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return FusedRotary::apply(x, cos, sin);
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
std::vector<at::Tensor> gemv_4bit_group_cuda(const at::Tensor&, const std::vector<const Quantized4bit*>&) {
  not_built();
}
bool gemv_grouping() { return false; }
void set_gemv_grouping(bool) {}
bool gemv_tiles() { return false; }
void set_gemv_tiles(bool) {}
bool tile_4bit_for_gemv_cuda(Quantized4bit&, at::ScalarType) { return false; }
cuda::FourBitWeight four_bit_kernel_view(const Quantized4bit&) { not_built(); }
const cuda::DynamicMap* kernel_dynamic_map() { not_built(); }
int64_t dequantize_chunk_bytes() { return 64 << 20; }
at::Tensor matmul_4bit_cuda(const at::Tensor&, const Quantized4bit&, int64_t) { not_built(); }
at::Tensor matmul_4bit_transposed_cuda(const at::Tensor&, const Quantized4bit&, int64_t) { not_built(); }
TrainingMatmul training_matmul() { return TrainingMatmul::sliced; }
void set_training_matmul(TrainingMatmul) {}
bool matmul_4bit_fused_supports(const at::Tensor&, const Quantized4bit&, cuda::MatmulPass) { return false; }
at::Tensor matmul_4bit_fused_cuda(const at::Tensor&, const Quantized4bit&, cuda::MatmulPass, cuda::MatmulTile) {
  not_built();
}
at::Tensor linear_4bit_cuda(const at::Tensor&, const Quantized4bit&, const at::Tensor&) { not_built(); }
bool rms_norm_cuda_supports(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor rms_norm_cuda(const at::Tensor&, const at::Tensor&, double) { not_built(); }
bool swiglu_cuda_supports(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor swiglu_cuda(const at::Tensor&, const at::Tensor&) { not_built(); }
bool rotary_cuda_supports(const at::Tensor&, const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor rotary_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&) { not_built(); }

#endif

}  // namespace autotrain
