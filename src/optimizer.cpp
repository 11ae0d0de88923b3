#include "autotrain/optimizer.h"

#include <cmath>
#include <map>

#include "autotrain/error.h"

namespace autotrain {

Optimizer::Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, OptimizerOptions options)
    : options_(std::move(options)), parameters_(std::move(parameters)) {
  if (options_.name == "adamw_torch" || options_.name == "adamw") {
    kind_ = Kind::adamw;
  } else if (options_.name == "adam") {
    kind_ = Kind::adam;
  } else if (options_.name == "sgd") {
    kind_ = Kind::sgd;
  } else {
    throw Error("optimizer \"" + options_.name + "\" is not supported (adamw_torch, adamw, adam, sgd)", kExitUsage);
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
  for (size_t i = 0; i < parameters_.size(); ++i) {
    at::Tensor param = parameters_[i].second;
    if (!param.grad().defined()) continue;
    at::Tensor grad = param.grad();
    if (kind_ == Kind::sgd) {
      if (wd != 0) grad = grad.add(param, wd);
      param.add_(grad, -lr);
      continue;
    }
    if (wd != 0) {
      if (kind_ == Kind::adamw) {
        param.mul_(1 - lr * wd);
      } else {
        grad = grad.add(param, wd);
      }
    }
    exp_avg_[i].lerp_(grad, 1 - beta1);
    exp_avg_sq_[i].mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    at::Tensor denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    param.addcdiv_(exp_avg_[i], denom, -step_size);
  }
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
