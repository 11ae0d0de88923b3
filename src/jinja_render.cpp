// Renders the tree of src/jinja_ast.h: scopes as jinja2 keeps them (a for loop's body and a macro have
// their own; `if` does not), Python's operators, and transformers' globals.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <unordered_map>

#include "autotrain/error.h"
#include "autotrain/jinja.h"
#include "jinja_value.h"

namespace autotrain {
namespace jinja {
namespace {

enum class Flow { kNormal, kBreak, kContinue };

// Bounds on what a template may make the renderer do: a chat template does a few hundred loop steps and calls
// and writes kilobytes; these stop one that would hang, exhaust the stack or fill the memory, with an Error.
constexpr int64_t kMaxRange = 100000;             // jinja2's sandbox: MAX_RANGE
constexpr int64_t kMaxLoopSteps = 10000000;
constexpr int kMaxCallDepth = 64;
constexpr size_t kMaxTextBytes = size_t{64} << 20;

const char* kGlobals[] = {"raise_exception", "namespace", "dict", "range", "strftime_now"};

bool is_integer(const OrderedJson& d) { return d.is_number_integer() || d.is_boolean(); }
int64_t integer_of(const OrderedJson& d) { return d.is_boolean() ? d.get<bool>() : d.get<int64_t>(); }
bool is_number(const OrderedJson& d) { return d.is_number() || d.is_boolean(); }
double number_of(const OrderedJson& d) { return d.is_boolean() ? d.get<bool>() : d.get<double>(); }

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (a.undefined || b.undefined) throw Failure("an undefined value in '" + op + "'");
  const OrderedJson& x = a.data;
  const OrderedJson& y = b.data;
  if (op == "+" && x.is_string() && y.is_string()) return x.get<std::string>() + y.get<std::string>();
  if (op == "+" && x.is_array() && y.is_array()) {
    OrderedJson joined = x;
    for (const auto& item : y) joined.push_back(item);
    return joined;
  }
  if (op == "*" && x.is_string() && is_integer(y)) {
    const size_t length = std::max<size_t>(x.get_ref<const std::string&>().size(), 1);
    if (integer_of(y) > 0 && static_cast<uint64_t>(integer_of(y)) > kMaxTextBytes / length)
      throw Failure("a string repeated past " + std::to_string(kMaxTextBytes >> 20) + " MiB");
    std::string repeated;
    for (int64_t i = 0; i < integer_of(y); ++i) repeated += x.get_ref<const std::string&>();
    return repeated;
  }
  if (!is_number(x) || !is_number(y)) throw Failure("unsupported operand types for '" + op + "'");
  const bool integers = is_integer(x) && is_integer(y);
  if (op == "/") {
    if (number_of(y) == 0) throw Failure("division by zero");
    return number_of(x) / number_of(y);
  }
  if (integers && (op != "**" || integer_of(y) >= 0)) {  // Python's ints do not overflow: beyond 64 bits is an error
    const int64_t i = integer_of(x), j = integer_of(y);
    int64_t result = 0;
    bool overflow = false;
    if (op == "+") {
      overflow = __builtin_add_overflow(i, j, &result);
    } else if (op == "-") {
      overflow = __builtin_sub_overflow(i, j, &result);
    } else if (op == "*") {
      overflow = __builtin_mul_overflow(i, j, &result);
    } else if (op == "**") {  // by squaring
      int64_t base = i;
      result = 1;
      for (int64_t e = j; e > 0 && !overflow; e >>= 1) {
        if (e & 1) overflow = __builtin_mul_overflow(result, base, &result);
        if (e > 1 && !overflow) overflow = __builtin_mul_overflow(base, base, &base);
      }
    } else if (op == "%") {  // Python's: the sign of the divisor
      if (j == 0) throw Failure("integer division or modulo by zero");
      result = j == -1 ? 0 : i % j;
      if (result != 0 && (result < 0) != (j < 0)) result += j;
    } else {  // "//"
      if (j == 0) throw Failure("integer division or modulo by zero");
      overflow = i == INT64_MIN && j == -1;
      if (!overflow) result = floor_div(i, j);
    }
    if (overflow) throw Failure("integer overflow in '" + op + "' (beyond 64 bits)");
    return result;
  }
  const double p = number_of(x), q = number_of(y);
  if (op == "+") return p + q;
  if (op == "-") return p - q;
  if (op == "*") return p * q;
  if (op == "**") return std::pow(p, q);
  if (q == 0) throw Failure("float division or modulo by zero");
  if (op == "//") return std::floor(p / q);
  if (op == "%") return p - std::floor(p / q) * q;
  throw Failure("unknown operator '" + op + "'");
}

Value compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.data.is_string() && !b.undefined) {
      if (!a.data.is_string()) throw Failure("'in <string>' requires a string on the left");
      found = b.data.get_ref<const std::string&>().find(a.data.get_ref<const std::string&>()) != std::string::npos;
    } else if (b.data.is_object() && !b.undefined) {
      found = a.data.is_string() && b.data.contains(a.data.get<std::string>());
    } else {
      for (const OrderedJson& item : iterate(b)) found = found || equal(Value(item), a);
    }
    return op == "in" ? found : !found;
  }
  int order;
  if (is_number(a.data) && is_number(b.data) && !a.undefined && !b.undefined) {
    const double x = number_of(a.data), y = number_of(b.data);
    order = x < y ? -1 : x > y ? 1 : 0;
  } else if (a.data.is_string() && b.data.is_string() && !a.undefined && !b.undefined) {
    order = a.data.get_ref<const std::string&>().compare(b.data.get_ref<const std::string&>());
  } else {
    throw Failure("'" + op + "' between values that cannot be ordered");
  }
  if (op == "<") return order < 0;
  if (op == ">") return order > 0;
  if (op == "<=") return order <= 0;
  return order >= 0;
}

// Python's slice of a list or a string (by character).
Value slice(const Value& target, const Value* start, const Value* stop, const Value* step) {
  const bool text = target.data.is_string();
  std::vector<OrderedJson> items = iterate(target);
  const auto n = static_cast<int64_t>(items.size());
  int64_t stride = step && !step->data.is_null() ? integer_of(step->data) : 1;
  if (stride == 0) throw Failure("slice step cannot be zero");
  stride = std::clamp<int64_t>(stride, -(n + 1), n + 1);  // a longer step takes one item, as it would; no overflow
  auto bound = [&](const Value* v, int64_t fallback) {
    if (!v || v->data.is_null()) return fallback;
    int64_t i = std::clamp<int64_t>(integer_of(v->data), -2 * n - 2, 2 * n + 2);
    if (i < 0) i += n;
    return stride > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t begin = bound(start, stride > 0 ? 0 : n - 1), end = bound(stop, stride > 0 ? n : -1);
  OrderedJson list = OrderedJson::array();
  std::string characters;
  for (int64_t i = begin; stride > 0 ? i < end : i > end; i += stride) {
    if (text) characters += items[static_cast<size_t>(i)].get<std::string>();
    else list.push_back(items[static_cast<size_t>(i)]);
  }
  if (text) return characters;
  return list;
}

class Renderer {
 public:
  Renderer(const Program& program, const OrderedJson& context) : program_(program) {
    frames_.emplace_back();
    for (const auto& [key, value] : context.items()) frames_[0][key] = Value(value);
  }

  std::string run() {
    std::string out;
    render(program_.body, out);
    return out;
  }

 private:
  using Frame = std::unordered_map<std::string, Value>;

  Flow render(const Body& body, std::string& out) {
    for (const auto& node : body) {
      Flow flow;
      try {
        flow = render_node(node, out);
      } catch (const Failure& failure) {
        throw Error(program_.name + ": line " + std::to_string(node->line) + ": " + failure.what());
      }
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow render_node(const std::shared_ptr<const Node>& node, std::string& out) {
    switch (node->kind) {
      case Node::Kind::kText: out += node->text; break;
      case Node::Kind::kOutput: out += to_text(eval(*node->expr)); break;
      case Node::Kind::kIf:
        for (const auto& [condition, branch] : node->branches)
          if (!condition || truthy(eval(*condition))) return render(branch, out);
        break;
      case Node::Kind::kFor: return render_for(*node, out);
      case Node::Kind::kSet: assign(node->targets, eval(*node->expr)); break;
      case Node::Kind::kSetBlock: {
        std::string captured;
        render(node->body, captured);
        assign(node->targets, Value(captured));
        break;
      }
      case Node::Kind::kMacro: {
        Value macro;
        macro.macro = node;
        frames_.back()[node->targets[0]] = macro;
        break;
      }
      case Node::Kind::kBreak: return Flow::kBreak;
      case Node::Kind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  Flow render_for(const Node& node, std::string& out) {
    std::vector<OrderedJson> items = iterate(eval(*node.expr));
    if (node.filter) {  // jinja2 filters before counting, so loop.length and loop.last see the kept items
      std::vector<OrderedJson> kept;
      for (const OrderedJson& item : items) {
        frames_.emplace_back();
        bind_targets(node.targets, item);
        if (truthy(eval(*node.filter))) kept.push_back(item);
        frames_.pop_back();
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      render(node.else_body, out);
      return Flow::kNormal;
    }
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      if (++loop_steps_ > kMaxLoopSteps) throw Failure("the template ran over " + std::to_string(kMaxLoopSteps) + " loop steps");
      if (out.size() > kMaxTextBytes) throw Failure("the template wrote over " + std::to_string(kMaxTextBytes >> 20) + " MiB");
      frames_.emplace_back();
      bind_targets(node.targets, items[static_cast<size_t>(i)]);
      OrderedJson loop = {{"index", i + 1}, {"index0", i}, {"revindex", n - i}, {"revindex0", n - i - 1},
                          {"first", i == 0}, {"last", i == n - 1}, {"length", n}};
      if (i > 0) loop["previtem"] = items[static_cast<size_t>(i - 1)];
      if (i + 1 < n) loop["nextitem"] = items[static_cast<size_t>(i + 1)];
      frames_.back()["loop"] = Value(loop);
      const Flow flow = render(node.body, out);
      frames_.pop_back();
      if (flow == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  void bind_targets(const std::vector<std::string>& targets, const OrderedJson& item) {
    if (targets.size() == 1) {
      frames_.back()[targets[0]] = Value(item);
      return;
    }
    if (!item.is_array() || item.size() != targets.size())
      throw Failure("cannot unpack " + python_repr(item) + " into " + std::to_string(targets.size()) + " names");
    for (size_t i = 0; i < targets.size(); ++i) frames_.back()[targets[i]] = Value(item[i]);
  }

  void assign(const std::vector<std::string>& targets, const Value& value) {
    if (targets.size() == 1) {
      frames_.back()[targets[0]] = value;
      return;
    }
    const Value space = lookup(targets[0]);
    if (!space.space) throw Failure("'" + targets[0] + "' is not a namespace(); only namespaces take attributes");
    (*space.space)[targets[1]] = value.data;
  }

  Value lookup(const std::string& name) const {
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame) {
      auto found = frame->find(name);
      if (found != frame->end()) return found->second;
    }
    for (const char* global : kGlobals) {
      if (name == global) {
        Value function;
        function.function = name;
        return function;
      }
    }
    return Value::make_undefined();
  }

  Arguments arguments_of(const Expr& call) {
    Arguments arguments;
    for (const auto& item : call.items) arguments.positional.push_back(eval(*item));
    for (const auto& [key, item] : call.kwargs) arguments.keyword.emplace_back(key, eval(*item));
    return arguments;
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::kLiteral: return Value(e.value);
      case Expr::Kind::kName: return lookup(e.name);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        Value list(OrderedJson::array());
        for (const auto& item : e.items) list.data.push_back(eval(*item).data);
        list.tuple = e.kind == Expr::Kind::kTuple;
        return list;
      }
      case Expr::Kind::kDict: {
        OrderedJson dict = OrderedJson::object();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) dict[to_text(eval(*e.items[i]))] = eval(*e.items[i + 1]).data;
        return dict;
      }
      case Expr::Kind::kAttribute: return attribute(eval(*e.a), e.name);
      case Expr::Kind::kSubscript: return item(eval(*e.a), eval(*e.b));
      case Expr::Kind::kSlice: {
        const Value target = eval(*e.a);
        if (target.undefined) throw Failure("slicing an undefined value");
        const Value start = e.b ? eval(*e.b) : Value(nullptr), stop = e.c ? eval(*e.c) : Value(nullptr);
        const Value step = e.items[0] ? eval(*e.items[0]) : Value(nullptr);
        return slice(target, &start, &stop, &step);
      }
      case Expr::Kind::kCall: return call(e);
      case Expr::Kind::kFilter: return apply_filter(e.name, eval(*e.a), arguments_of(e));
      case Expr::Kind::kTest: return apply_test(e.name, eval(*e.a), arguments_of(e)) != e.negated;
      case Expr::Kind::kUnary: {
        const Value operand = eval(*e.a);
        if (e.name == "not") return !truthy(operand);
        if (!is_number(operand.data) || operand.undefined) throw Failure("unary '" + e.name + "' on a non-number");
        if (e.name == "+") return operand;
        if (is_integer(operand.data)) {
          if (integer_of(operand.data) == INT64_MIN) throw Failure("integer overflow in unary '-'");
          return -integer_of(operand.data);
        }
        return -number_of(operand.data);
      }
      case Expr::Kind::kBinary: {
        const Value left = eval(*e.a);
        if (e.name == "and") return truthy(left) ? eval(*e.b) : left;
        if (e.name == "or") return truthy(left) ? left : eval(*e.b);
        const Value right = eval(*e.b);
        if (e.name == "~") return to_text(left) + to_text(right);
        static const char* kComparisons[] = {"==", "!=", "<", ">", "<=", ">=", "in", "not in"};
        for (const char* op : kComparisons)
          if (e.name == op) return compare(e.name, left, right);
        return arithmetic(e.name, left, right);
      }
      case Expr::Kind::kConditional:
        if (truthy(eval(*e.b))) return eval(*e.a);
        return e.c ? eval(*e.c) : Value::make_undefined();
    }
    throw Failure("unknown expression");
  }

  static Value attribute(const Value& object, const std::string& name) {
    if (object.undefined) throw Failure("an undefined value has no attribute '" + name + "'");
    if (object.space) return object.space->contains(name) ? Value((*object.space)[name]) : Value::make_undefined();
    if (object.data.is_object() && object.data.contains(name)) return object.data[name];
    return Value::make_undefined();
  }

  static Value item(const Value& object, const Value& key) {
    if (object.undefined) throw Failure("an undefined value has no item " + to_text(key));
    if (object.space) return attribute(object, to_text(key));
    const OrderedJson& d = object.data;
    if (d.is_object()) {
      const std::string name = key.data.is_string() ? key.data.get<std::string>() : to_text(key);
      return d.contains(name) ? Value(d[name]) : Value::make_undefined();
    }
    if ((d.is_array() || d.is_string()) && is_integer(key.data)) {
      std::vector<OrderedJson> items = d.is_array() ? std::vector<OrderedJson>(d.begin(), d.end()) : iterate(object);
      int64_t i = integer_of(key.data);
      if (i < 0) i += static_cast<int64_t>(items.size());
      if (i < 0 || i >= static_cast<int64_t>(items.size())) return Value::make_undefined();
      return items[static_cast<size_t>(i)];
    }
    return Value::make_undefined();
  }

  Value call(const Expr& e) {
    if (e.a->kind == Expr::Kind::kAttribute) {  // a method: message.content.strip(), messages[0].get('x')
      const Value object = eval(*e.a->a);
      if (object.undefined) throw Failure("an undefined value has no method '" + e.a->name + "'");
      return call_method(object, e.a->name, arguments_of(e));
    }
    const Value callee = eval(*e.a);
    const Arguments arguments = arguments_of(e);
    if (callee.macro) return call_macro(*callee.macro, arguments);
    const std::string& f = callee.function;
    if (f == "raise_exception") {
      const Value* message = arguments.find(0, "message");
      throw Error(program_.name + ": " + (message ? to_text(*message) : std::string("raise_exception()")));
    }
    if (f == "namespace" || f == "dict") {
      auto attributes = std::make_shared<OrderedJson>(OrderedJson::object());
      for (const Value& mapping : arguments.positional)
        if (mapping.data.is_object()) attributes->update(mapping.data);
      for (const auto& [key, value] : arguments.keyword) (*attributes)[key] = value.data;
      if (f == "dict") return *attributes;
      Value space;
      space.space = attributes;
      return space;
    }
    if (f == "range") {
      const auto& p = arguments.positional;
      if (p.empty() || p.size() > 3) throw Failure("range() takes 1 to 3 integers");
      const int64_t start = p.size() > 1 ? integer_of(p[0].data) : 0;
      const int64_t stop = integer_of(p[p.size() > 1 ? 1 : 0].data);
      const int64_t step = p.size() > 2 ? integer_of(p[2].data) : 1;
      if (step == 0) throw Failure("range() step cannot be zero");
      const double items = (static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step);
      if (items > kMaxRange) throw Failure("range() of more than " + std::to_string(kMaxRange) + " items");
      OrderedJson list = OrderedJson::array();
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) list.push_back(i);
      return list;
    }
    if (f == "strftime_now") {
      const Value* format = arguments.find(0, "format");
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char buffer[256];
      const size_t length = std::strftime(buffer, sizeof buffer, format ? to_text(*format).c_str() : "", &local);
      return std::string(buffer, length);
    }
    throw Failure(callee.undefined ? std::string("calling an undefined name") : "calling a value that is not a function");
  }

  Value call_macro(const Node& macro, const Arguments& arguments) {
    if (call_depth_ >= kMaxCallDepth) throw Failure("macros nested deeper than " + std::to_string(kMaxCallDepth));
    Frame parameters;
    for (size_t i = 0; i < macro.parameters.size(); ++i) {
      const auto& [name, fallback] = macro.parameters[i];
      const Value* given = arguments.find(i, name);
      parameters[name] = given ? *given : fallback ? eval(*fallback) : Value::make_undefined();
    }
    std::vector<Frame> saved = std::move(frames_);
    frames_ = {saved.front(), std::move(parameters)};
    std::string out;
    ++call_depth_;
    try {
      render(macro.body, out);
    } catch (...) {
      frames_ = std::move(saved);
      --call_depth_;
      throw;
    }
    frames_ = std::move(saved);
    --call_depth_;
    return out;
  }

  const Program& program_;
  std::vector<Frame> frames_;
  int64_t loop_steps_ = 0;
  int call_depth_ = 0;
};

}  // namespace
}  // namespace jinja

JinjaTemplate::JinjaTemplate(const std::string& source, const std::string& name)
    : program_(jinja::parse(source, name)) {}

std::string JinjaTemplate::render(const OrderedJson& context) const {
  return jinja::Renderer(*program_, context).run();
}

}  // namespace autotrain
