#include "autotrain/optimizer.h"

#include <cmath>
#include <map>

#include "autotrain/error.h"

namespace autotrain {

double clip_gradient_norm(const std::vector<at::Tensor>& parameters, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  const std::vector<at::Tensor> norms = at::_foreach_norm(grads, 2);
  const at::Tensor total = norms.size() == 1 ? norms.front() : at::stack(norms).norm(2);
  const at::Tensor coefficient = at::clamp_max(max_norm / (total + 1e-6), 1.0);
  at::_foreach_mul_(grads, coefficient);
  return total.item<double>();
}

namespace {

// The names run as AdamW (autotrain/optimizer.h says why each is the same update).
bool is_adamw_optimizer(const std::string& name) {
  for (const char* adamw : {"adamw_torch", "adamw", "adamw_torch_fused", "paged_adamw_32bit", "adamw_8bit",
                            "adamw_bnb_8bit", "paged_adamw_8bit"})
    if (name == adamw) return true;
  return false;
}

}  // namespace

Optimizer::Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, OptimizerOptions options)
    : options_(std::move(options)), parameters_(std::move(parameters)) {
  if (is_adamw_optimizer(options_.name)) {
    kind_ = Kind::adamw;
  } else if (options_.name == "adam") {
    kind_ = Kind::adam;
  } else if (options_.name == "sgd") {
    kind_ = Kind::sgd;
  } else {
    throw Error("optimizer \"" + options_.name + "\" is not supported (adamw_torch and the AdamW names, adam, sgd)",
                kExitUsage);
  }
  for (const auto& [name, p] : parameters_) {
    exp_avg_.push_back(kind_ == Kind::sgd ? at::Tensor() : at::zeros_like(p));
    exp_avg_sq_.push_back(kind_ == Kind::sgd ? at::Tensor() : at::zeros_like(p));
  }
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : parameters_) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

void Optimizer::step(double lr) {
  at::NoGradGuard no_grad;
  ++steps_;
  const double wd = options_.weight_decay, beta1 = options_.beta1, beta2 = options_.beta2;
  // torch keeps the step count in a float32 tensor and reads it back with .item(): exact for integers.
  const double step = static_cast<double>(static_cast<float>(steps_));
  const double bias_correction1 = 1 - std::pow(beta1, step);
  const double bias_correction2_sqrt = std::pow(1 - std::pow(beta2, step), 0.5);
  const double step_size = lr / bias_correction1;
  // The parameters with a gradient, updated together by multi-tensor (_foreach) operations: one kernel per
  // operation on a GPU instead of one per parameter, and on the CPU the single-tensor operations themselves.
  std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const at::Tensor& param = parameters_[i].second;
    if (!param.grad().defined()) continue;
    params.push_back(param);
    grads.push_back(param.grad());
    if (kind_ != Kind::sgd) {
      exp_avgs.push_back(exp_avg_[i]);
      exp_avg_sqs.push_back(exp_avg_sq_[i]);
    }
  }
  if (params.empty()) return;
  if (kind_ == Kind::sgd) {
    if (wd != 0) grads = at::_foreach_add(grads, params, wd);
    at::_foreach_add_(params, grads, -lr);
    return;
  }
  if (wd != 0) {
    if (kind_ == Kind::adamw) {
      at::_foreach_mul_(params, 1 - lr * wd);
    } else {
      grads = at::_foreach_add(grads, params, wd);
    }
  }
  at::_foreach_lerp_(exp_avgs, grads, 1 - beta1);
  at::_foreach_mul_(exp_avg_sqs, beta2);
  at::_foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2);
  std::vector<at::Tensor> denom = at::_foreach_sqrt(exp_avg_sqs);
  at::_foreach_div_(denom, bias_correction2_sqrt);
  at::_foreach_add_(denom, options_.eps);
  at::_foreach_addcdiv_(params, exp_avgs, denom, -step_size);
}

std::vector<std::pair<std::string, at::Tensor>> Optimizer::state() const {
  std::vector<std::pair<std::string, at::Tensor>> state;
  state.emplace_back("step", at::tensor({steps_}, at::kLong));
  if (kind_ == Kind::sgd) return state;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    state.emplace_back(parameters_[i].first + ".exp_avg", exp_avg_[i]);
    state.emplace_back(parameters_[i].first + ".exp_avg_sq", exp_avg_sq_[i]);
  }
  return state;
}

void Optimizer::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, const std::string& source) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  auto find = [&](const std::string& name, const at::Tensor& like) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw Error(source + ": optimizer state has no tensor " + name);
    if (like.defined() && it->second.sizes() != like.sizes()) {
      throw Error(source + ": optimizer tensor " + name + " has the wrong shape for this model");
    }
    return it->second;
  };
  steps_ = find("step", {}).item<int64_t>();
  if (kind_ == Kind::sgd) return;
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    exp_avg_[i].copy_(find(parameters_[i].first + ".exp_avg", exp_avg_[i]));
    exp_avg_sq_[i].copy_(find(parameters_[i].first + ".exp_avg_sq", exp_avg_sq_[i]));
  }
}

}  // namespace autotrain
