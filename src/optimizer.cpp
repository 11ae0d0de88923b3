#include "autotrain/optimizer.h"

#include <cmath>
#include <map>

#include "autotrain/error.h"
#include "autotrain/text_util.h"

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

enum class OptimizerUpdate : uint8_t { adamw, adam, sgd, adagrad, rmsprop, rmsprop_bnb, lion, adafactor };

namespace {

using Kind = OptimizerUpdate;

// transformers' and the optimizers' defaults for what TrainingArguments does not set.
constexpr double kRmspropAlpha = 0.99, kRmspropEps = 1e-8;            // torch.optim.RMSprop, bitsandbytes RMSprop
constexpr double kAdagradEps = 1e-10;                                  // torch.optim.Adagrad (lr_decay 0)
constexpr double kAdafactorEps = 1e-30, kAdafactorClip = 1.0, kAdafactorDecayRate = -0.8;  // transformers' Adafactor

struct OptimizerName {
  const char* name;
  Kind update;
  const char* runs_as;  // the 32-bit name whose update an 8-bit one runs; nullptr for the others
};

// Every name, in the order a user sees them, with the update it runs.
constexpr OptimizerName kOptimizerNames[] = {
    {"adamw_torch", Kind::adamw, nullptr},
    {"adamw", Kind::adamw, nullptr},
    {"adam", Kind::adam, nullptr},
    {"sgd", Kind::sgd, nullptr},
    {"adamw_torch_fused", Kind::adamw, nullptr},
    {"paged_adamw_32bit", Kind::adamw, nullptr},
    {"adamw_8bit", Kind::adamw, "adamw_torch"},
    {"adamw_bnb_8bit", Kind::adamw, "adamw_torch"},
    {"paged_adamw_8bit", Kind::adamw, "adamw_torch"},
    {"adafactor", Kind::adafactor, nullptr},
    {"adagrad", Kind::adagrad, nullptr},
    {"rmsprop", Kind::rmsprop, nullptr},
    {"rmsprop_bnb", Kind::rmsprop_bnb, nullptr},
    {"rmsprop_bnb_32bit", Kind::rmsprop_bnb, nullptr},
    {"rmsprop_bnb_8bit", Kind::rmsprop_bnb, "rmsprop_bnb_32bit"},
    {"lion_32bit", Kind::lion, nullptr},
    {"paged_lion_32bit", Kind::lion, nullptr},
    {"lion_8bit", Kind::lion, "lion_32bit"},
    {"paged_lion_8bit", Kind::lion, "lion_32bit"},
};

const OptimizerName* find_name(const std::string& name) {
  for (const OptimizerName& entry : kOptimizerNames)
    if (name == entry.name) return &entry;
  return nullptr;
}

// The state `kind` keeps for a parameter of `shape`: each slot's name (as the reference optimizer names it) and
// shape, in fp32.
std::vector<std::pair<const char*, std::vector<int64_t>>> state_slots(Kind kind, at::IntArrayRef shape) {
  const std::vector<int64_t> whole(shape.begin(), shape.end());
  switch (kind) {
    case Kind::adamw:
    case Kind::adam: return {{"exp_avg", whole}, {"exp_avg_sq", whole}};
    case Kind::sgd: return {};
    case Kind::adagrad: return {{"sum", whole}};
    case Kind::rmsprop:
    case Kind::rmsprop_bnb: return {{"square_avg", whole}};
    case Kind::lion: return {{"exp_avg", whole}};
    case Kind::adafactor: {
      // A matrix (or stack of them) keeps the means of its squared gradients over rows and over columns; a
      // vector keeps them whole.
      if (shape.size() < 2) return {{"exp_avg_sq", whole}};
      std::vector<int64_t> col(shape.begin(), shape.end() - 2);
      col.push_back(shape.back());
      return {{"exp_avg_sq_row", std::vector<int64_t>(shape.begin(), shape.end() - 1)}, {"exp_avg_sq_col", col}};
    }
  }
  return {};
}

// Whether `kind` adds its weight decay to the gradient (L2: torch's Adam, SGD, Adagrad and RMSprop, bitsandbytes'
// RMSprop) rather than shrinking the parameters (AdamW, Lion) or the parameter by its own rate (Adafactor).
bool decays_through_the_gradient(Kind kind) {
  return kind == Kind::adam || kind == Kind::sgd || kind == Kind::adagrad || kind == Kind::rmsprop ||
         kind == Kind::rmsprop_bnb;
}

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> all;
    for (const OptimizerName& entry : kOptimizerNames) all.emplace_back(entry.name);
    return all;
  }();
  return names;
}

std::optional<std::string> optimizer_runs_as_32bit(const std::string& name) {
  const OptimizerName* entry = find_name(name);
  if (!entry || !entry->runs_as) return std::nullopt;
  return std::string(entry->runs_as);
}

int64_t optimizer_state_bytes(const std::string& name, int64_t rows, int64_t cols) {
  const OptimizerName* entry = find_name(name);
  int64_t values = 0;
  for (const auto& [slot, shape] : state_slots(entry ? entry->update : Kind::adamw, {rows, cols})) {
    int64_t count = 1;
    for (const int64_t size : shape) count *= size;
    values += count;
  }
  return 4 * values;  // an unknown name is refused before it is run; counted as AdamW here
}

Optimizer::Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, OptimizerOptions options)
    : options_(std::move(options)), parameters_(std::move(parameters)) {
  const OptimizerName* entry = find_name(options_.name);
  if (!entry) {
    throw Error("optimizer \"" + options_.name + "\" is not supported (supported: " + join(optimizer_names(), ", ") +
                    ")",
                kExitUsage);
  }
  kind_ = entry->update;
  for (const auto& [name, p] : parameters_) {
    std::vector<std::pair<std::string, at::Tensor>> slots;
    for (const auto& [slot, shape] : state_slots(kind_, p.sizes()))
      slots.emplace_back(slot, at::zeros(shape, p.options()));
    state_.push_back(std::move(slots));
  }
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : parameters_) {
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  }
}

Optimizer::Batch Optimizer::with_gradients() const {
  Batch b;
  const size_t slots = state_.empty() ? 0 : state_.front().size();
  b.slot.resize(slots);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const at::Tensor& param = parameters_[i].second;
    if (!param.grad().defined()) continue;
    b.params.push_back(param);
    b.grads.push_back(param.grad());
    for (size_t k = 0; k < slots; ++k) b.slot[k].push_back(state_[i][k].second);
  }
  return b;
}

void Optimizer::step(double lr) {
  at::NoGradGuard no_grad;
  ++steps_;
  if (kind_ == Kind::adafactor) return adafactor_step(lr);
  Batch b = with_gradients();
  if (b.params.empty()) return;
  const double wd = options_.weight_decay;
  // torch skips a zero weight decay, bitsandbytes a non-positive one: the same for wd >= 0.
  if (wd != 0 && decays_through_the_gradient(kind_)) b.grads = at::_foreach_add(b.grads, b.params, wd);
  switch (kind_) {
    case Kind::adamw:
    case Kind::adam:
      adam_step(b, lr);
      return;
    case Kind::sgd:  // torch.optim.SGD without momentum
      at::_foreach_add_(b.params, b.grads, -lr);
      return;
    case Kind::adagrad: {  // torch.optim.Adagrad, lr_decay 0: clr = lr
      at::_foreach_addcmul_(b.slot[0], b.grads, b.grads, 1);
      std::vector<at::Tensor> std_dev = at::_foreach_sqrt(b.slot[0]);
      at::_foreach_add_(std_dev, kAdagradEps);
      at::_foreach_addcdiv_(b.params, b.grads, std_dev, -lr);
      return;
    }
    case Kind::rmsprop:
    case Kind::rmsprop_bnb: {
      at::_foreach_mul_(b.slot[0], kRmspropAlpha);
      at::_foreach_addcmul_(b.slot[0], b.grads, b.grads, 1 - kRmspropAlpha);
      std::vector<at::Tensor> avg = at::_foreach_sqrt(b.slot[0]);
      at::_foreach_add_(avg, kRmspropEps);
      if (kind_ == Kind::rmsprop) {
        at::_foreach_addcdiv_(b.params, b.grads, avg, -lr);  // p + (-lr * g) / avg
      } else {
        at::_foreach_add_(b.params, at::_foreach_div(b.grads, avg), -lr);  // p + -lr * (g / avg)
      }
      return;
    }
    case Kind::lion: {  // bitsandbytes' Lion (its CPU ops, which its GPU kernel computes in one pass)
      const double beta1 = options_.beta1, beta2 = options_.beta2;
      if (wd != 0) at::_foreach_mul_(b.params, 1.0 - lr * wd);
      std::vector<at::Tensor> direction = at::_foreach_mul(b.slot[0], beta1);
      at::_foreach_add_(direction, b.grads, 1.0 - beta1);
      at::_foreach_sign_(direction);
      at::_foreach_add_(b.params, direction, -lr);
      at::_foreach_mul_(b.slot[0], beta2);
      at::_foreach_add_(b.slot[0], b.grads, 1.0 - beta2);
      return;
    }
    case Kind::adafactor:
      break;
  }
}

void Optimizer::adam_step(Batch& b, double lr) {
  const double wd = options_.weight_decay, beta1 = options_.beta1, beta2 = options_.beta2;
  // torch keeps the step count in a float32 tensor and reads it back with .item(): exact for integers.
  const double step = static_cast<double>(static_cast<float>(steps_));
  const double bias_correction1 = 1 - std::pow(beta1, step);
  const double bias_correction2_sqrt = std::pow(1 - std::pow(beta2, step), 0.5);
  const double step_size = lr / bias_correction1;
  std::vector<at::Tensor>& exp_avgs = b.slot[0];
  std::vector<at::Tensor>& exp_avg_sqs = b.slot[1];
  if (wd != 0 && kind_ == Kind::adamw) at::_foreach_mul_(b.params, 1 - lr * wd);  // Adam's went into the gradient
  at::_foreach_lerp_(exp_avgs, b.grads, 1 - beta1);
  at::_foreach_mul_(exp_avg_sqs, beta2);
  at::_foreach_addcmul_(exp_avg_sqs, b.grads, b.grads, 1 - beta2);
  std::vector<at::Tensor> denom = at::_foreach_sqrt(exp_avg_sqs);
  at::_foreach_div_(denom, bias_correction2_sqrt);
  at::_foreach_add_(denom, options_.eps);
  at::_foreach_addcdiv_(b.params, exp_avgs, denom, -step_size);
}

// transformers' Adafactor.step for one parameter group with lr set, scale_parameter, relative_step and warmup_init
// off and beta1 None (what Trainer builds for optim="adafactor"), one parameter at a time as it does: the update is
// scaled by its own root mean square.
void Optimizer::adafactor_step(double lr) {
  const double wd = options_.weight_decay;
  // Adafactor counts steps in a Python int: beta2t = 1 - step^-0.8 in double.
  const double beta2t = 1.0 - std::pow(static_cast<double>(steps_), kAdafactorDecayRate);
  const auto rms = [](const at::Tensor& t) {
    return at::linalg_vector_norm(t, 2) / std::sqrt(static_cast<double>(t.numel()));
  };
  for (size_t i = 0; i < parameters_.size(); ++i) {
    at::Tensor& p = parameters_[i].second;
    if (!p.grad().defined()) continue;
    const at::Tensor grad = p.grad();
    at::Tensor update = grad.pow(2) + kAdafactorEps;
    if (p.dim() >= 2) {
      at::Tensor& row = state_[i][0].second;
      at::Tensor& col = state_[i][1].second;
      row.mul_(beta2t).add_(update.mean(-1), 1.0 - beta2t);
      col.mul_(beta2t).add_(update.mean(-2), 1.0 - beta2t);
      const at::Tensor r_factor = (row / row.mean(-1, /*keepdim=*/true)).rsqrt_().unsqueeze(-1);
      const at::Tensor c_factor = col.unsqueeze(-2).rsqrt();
      update = at::mul(r_factor, c_factor);
      update.mul_(grad);
    } else {
      at::Tensor& sq = state_[i][0].second;
      sq.mul_(beta2t).add_(update, 1.0 - beta2t);
      update = sq.rsqrt().mul_(grad);
    }
    update.div_((rms(update) / kAdafactorClip).clamp_(1.0));
    update.mul_(lr);
    if (wd != 0) p.add_(p, -wd * lr);
    p.add_(-update);
  }
}

std::vector<std::pair<std::string, at::Tensor>> Optimizer::state() const {
  std::vector<std::pair<std::string, at::Tensor>> state;
  state.emplace_back("step", at::tensor({steps_}, at::kLong));
  for (size_t i = 0; i < parameters_.size(); ++i)
    for (const auto& [slot, tensor] : state_[i]) state.emplace_back(parameters_[i].first + "." + slot, tensor);
  return state;
}

void Optimizer::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, const std::string& source) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  auto find = [&](const std::string& name, const at::Tensor& like) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      throw Error(source + ": optimizer state has no tensor " + name + ": it was not written by optimizer \"" +
                  options_.name + "\" (resume with the optimizer the checkpoint was trained with)");
    }
    if (like.defined() && it->second.sizes() != like.sizes()) {
      throw Error(source + ": optimizer tensor " + name + " has the wrong shape for this model");
    }
    return it->second;
  };
  steps_ = find("step", {}).item<int64_t>();
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i)
    for (auto& [slot, tensor] : state_[i]) tensor.copy_(find(parameters_[i].first + "." + slot, tensor));
}

}  // namespace autotrain
