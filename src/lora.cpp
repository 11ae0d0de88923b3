#include "autotrain/lora.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

namespace autotrain {

namespace {

// splitmix64's output function (Steele, Lea and Flood, 2014): a bijective mix of 64 bits, so that the values of
// consecutive counters look independent.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// at::dropout(x, p, train): x * noise, noise 0 with probability p and 1 / (1 - p) otherwise. On the CPU in fp32 the
// noise comes from a counter-based hash of one 64-bit seed drawn from the CPU generator, in parallel: libtorch's
// bernoulli_ took ~4 ms for a 1024 x 640 input on two cores, 14 % of a training step of the CPU benchmark's model.
// Other devices and dtypes take at::dropout.
at::Tensor dropout_cpu(const at::Tensor& x, double p) {
  if (!x.is_cpu() || x.scalar_type() != at::kFloat || !(p > 0 && p < 1)) return at::dropout(x, p, /*train=*/true);
  // One draw from the CPU generator: a layer re-run from the same generator state (activation checkpointing) gets
  // the same mask, and a resumed run continues the same stream.
  uint64_t seed = 0;
  {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(generator)->random64();
  }
  at::Tensor noise = at::empty(x.sizes(), x.options().requires_grad(false));
  float* out = noise.data_ptr<float>();
  const auto threshold = static_cast<uint64_t>(std::ldexp(p, 32));  // dropped where the 32-bit draw is below
  const float kept = static_cast<float>(1.0 / (1.0 - p));
  at::parallel_for(0, noise.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t draw = mix64(seed + static_cast<uint64_t>(i + 1) * 0x9e3779b97f4a7c15ULL) >> 32;
      out[i] = draw < threshold ? 0.0f : kept;
    }
  });
  return x * noise;
}

}  // namespace

double lora_scaling(const LoraOptions& options) {
  double r = static_cast<double>(options.r);
  return options.rslora ? options.alpha / std::sqrt(r) : options.alpha / r;
}

LoraLinearImpl::LoraLinearImpl(std::shared_ptr<const FrozenLinear> base, const LoraOptions& options)
    : base_(std::move(base)), scaling_(lora_scaling(options)), dropout_(options.dropout) {
  lora_A = register_parameter("lora_A", at::empty({options.r, base_->in_features()}, at::kFloat));
  lora_B = register_parameter("lora_B", at::empty({base_->out_features(), options.r}, at::kFloat));
  reset_parameters();
}

void LoraLinearImpl::reset_parameters() {
  at::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(lora_A, std::sqrt(5.0));
  lora_B.zero_();
}

at::ScalarType lora_compute_dtype(const at::Tensor& x) {
  const at::ScalarType t = x.scalar_type();
  return t == at::kBFloat16 || t == at::kHalf ? t : at::kFloat;
}

at::Tensor LoraLinearImpl::lora_input(const at::Tensor& x) const {
  return dropout_active() ? dropout_cpu(x.to(lora_A.scalar_type()), dropout_) : x;
}

at::Tensor LoraLinearImpl::forward(const at::Tensor& x) {
  at::Tensor result = base_->forward(x);
  const at::ScalarType compute = lora_compute_dtype(x);
  at::Tensor h = lora_input(x);
  at::Tensor update = at::linear(at::linear(h.to(compute), lora_A.to(compute)), lora_B.to(compute)) * scaling_;
  return result + update.to(result.scalar_type());
}

}  // namespace autotrain

namespace autotrain {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inputs, flattened by autograd: x, bases[0..n), A[0..n), B[0..n), then the scalings (not a tensor).
struct FusedLora : public torch::autograd::Function<FusedLora> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList bases, at::TensorList as,
                               at::TensorList bs, std::vector<double> scalings) {
    const int64_t n = static_cast<int64_t>(as.size()), in = x.size(-1);
    const at::ScalarType compute = lora_compute_dtype(x);
    at::Tensor h = x.reshape({-1, in}).to(compute);
    at::Tensor a_all = at::cat(as, 0).to(compute);  // (r_1 + ... + r_n, in)
    std::vector<at::Tensor> bs_c;
    for (const at::Tensor& b : bs) bs_c.push_back(b.to(compute));
    at::Tensor xa = at::mm(h, a_all.t());  // (M, r_1 + ... + r_n): the one read of x
    variable_list outputs;
    int64_t offset = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = as[i].size(0);
      at::Tensor xa_i = xa.narrow(1, offset, r);
      offset += r;
      at::Tensor base = bases[i].reshape({-1, bs[i].size(0)});
      at::Tensor out = base.scalar_type() == xa.scalar_type()
                           ? at::addmm(base, xa_i, bs_c[i].t(), /*beta=*/1, /*alpha=*/scalings[i])  // into the base
                           : base + (at::mm(xa_i, bs_c[i].t()) * scalings[i]).to(base.scalar_type());
      outputs.push_back(out.view(bases[i].sizes()));
    }
    // The adapters in the compute dtype (small) for the backward; their gradients go back to fp32 there.
    variable_list saved{x, xa, a_all};
    saved.insert(saved.end(), bs_c.begin(), bs_c.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["scalings"] = scalings;
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& xa = saved[1];
    const at::Tensor& a_all = saved[2];
    const int64_t n = static_cast<int64_t>(grads.size());
    std::vector<at::Tensor> bs(saved.begin() + 3, saved.end());
    const c10::List<double> scalings = ctx->saved_data["scalings"].toDoubleList();
    const int64_t in = x.size(-1), m = xa.size(0);
    std::vector<at::Tensor> d_xa, d_as, d_bs, d_bases;
    int64_t offset = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = bs[i].size(1), out = bs[i].size(0);
      at::Tensor xa_i = xa.narrow(1, offset, r);
      offset += r;
      at::Tensor g = grads[i].defined() ? grads[i] : at::zeros({m, out}, xa.options());
      d_bases.push_back(grads[i]);  // the base output passes its gradient through
      at::Tensor dy = g.reshape({m, out}).to(xa.scalar_type());
      d_bs.push_back((at::mm(dy.t(), xa_i) * scalings[i]).to(at::kFloat));
      d_xa.push_back(at::mm(dy, bs[i]) * scalings[i]);
    }
    at::Tensor dxa = at::cat(d_xa, 1);                                      // (M, r_1 + ... + r_n)
    at::Tensor h = x.reshape({-1, in}).to(xa.scalar_type());
    at::Tensor da = at::mm(dxa.t(), h).to(at::kFloat);                      // every dA from one read of x
    at::Tensor dx = at::mm(dxa, a_all).to(x.scalar_type()).view(x.sizes());
    variable_list result{dx};
    result.insert(result.end(), d_bases.begin(), d_bases.end());
    offset = 0;
    for (int64_t i = 0; i < n; ++i) {
      result.push_back(da.narrow(0, offset, bs[i].size(1)));
      offset += bs[i].size(1);
    }
    result.insert(result.end(), d_bs.begin(), d_bs.end());
    result.push_back(at::Tensor());  // the scalings
    return result;
  }
};

}  // namespace

std::vector<at::Tensor> fused_lora(const at::Tensor& x, const std::vector<at::Tensor>& bases,
                                   const std::vector<const LoraLinearImpl*>& loras) {
  std::vector<at::Tensor> as, bs;
  std::vector<double> scalings;
  for (const LoraLinearImpl* lora : loras) {
    as.push_back(lora->lora_A);
    bs.push_back(lora->lora_B);
    scalings.push_back(lora->scaling());
  }
  return fused_lora(x, bases, as, bs, scalings);
}

std::vector<at::Tensor> fused_lora(const at::Tensor& x, const std::vector<at::Tensor>& bases,
                                   const std::vector<at::Tensor>& as, const std::vector<at::Tensor>& bs,
                                   const std::vector<double>& scalings) {
  return FusedLora::apply(x, at::TensorList(bases), at::TensorList(as), at::TensorList(bs), scalings);
}

at::Tensor lora_forward_fused(const LoraLinearImpl& lora, const at::Tensor& x) {
  at::Tensor base = lora.base().forward(x);
  at::Tensor h = lora.lora_input(x);  // after the base, as forward draws it
  return fused_lora(h, {base}, {&lora}).front();
}

bool use_fused_lora(const at::Tensor& x) {
  static const int forced = [] {
    const char* value = std::getenv("AUTOTRAIN_FUSED_LORA");
    if (value == nullptr || *value == '\0') return -1;
    return std::string(value) == "0" ? 0 : 1;
  }();
  return forced == -1 ? x.is_cuda() : forced == 1;
}

}  // namespace autotrain
