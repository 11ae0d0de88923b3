#include "autotrain/quant.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autotrain/error.h"

namespace autotrain {

namespace {

// NF4: quantiles of N(0, 1) normalised to [-1, 1] (QLoRA paper; bitsandbytes get_4bit_type("nf4")).
// The tables are double literals rounded to float once, as torch.tensor(python_floats) does: a float
// literal of the same decimal can round differently in the last bit.
constexpr std::array<double, 16> kNf4Double = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0};
// FP4 (e2m1 without inf/nan, bitsandbytes get_4bit_type("fp4")): index bit 3 is the sign.
constexpr std::array<double, 16> kFp4Double = {
    0.0, 0.0052083334885537624, 0.6666666865348816, 1.0, 0.3333333432674408, 0.5, 0.1666666716337204, 0.25,
    -0.0, -0.0052083334885537624, -0.6666666865348816, -1.0, -0.3333333432674408, -0.5,
    -0.1666666716337204, -0.25};

template <size_t N>
std::array<float, N> to_float(const std::array<double, N>& values) {
  std::array<float, N> out;
  for (size_t i = 0; i < N; ++i) out[i] = static_cast<float>(values[i]);
  return out;
}
const std::array<float, 16> kNf4 = to_float(kNf4Double);
const std::array<float, 16> kFp4 = to_float(kFp4Double);

// The decision boundaries of a 4-bit code: the midpoints between neighbours in sorted order (fp32
// arithmetic, as bitsandbytes' bucketize), and the code index of each sorted position.
struct Boundaries {
  std::array<float, 15> midpoints;
  std::array<uint8_t, 16> index_of_sorted;
  // index_of_sorted[k + 1] - index_of_sorted[k] (mod 256): code_of adds one per midpoint below x.
  std::array<uint8_t, 15> steps;
};

Boundaries boundaries_of(const std::array<float, 16>& code) {
  Boundaries b;
  std::array<uint8_t, 16> order;
  std::iota(order.begin(), order.end(), uint8_t{0});
  std::stable_sort(order.begin(), order.end(), [&](uint8_t x, uint8_t y) { return code[x] < code[y]; });
  for (int i = 0; i < 15; ++i) b.midpoints[i] = (code[order[i]] + code[order[i + 1]]) / 2.0f;
  b.index_of_sorted = order;
  for (int i = 0; i < 15; ++i) b.steps[i] = static_cast<uint8_t>(order[i + 1] - order[i]);
  return b;
}

// The code of a scaled value: index_of_sorted[k] with k = the number of midpoints strictly below x, which is
// torch.bucketize(x, midpoints, right=False) (and 0 for NaN, whose comparisons are all false). The midpoints
// are sorted, so the comparisons that hold are the first k and the steps telescope to index_of_sorted[k].
// No branch and no table lookup: the compiler vectorises a loop over x (15 compares, masks and adds).
inline uint8_t code_of(float x, const Boundaries& b) {
  uint8_t code = b.index_of_sorted[0];
  for (int k = 0; k < 15; ++k) code += b.midpoints[k] < x ? b.steps[k] : uint8_t{0};
  return code;
}

// The largest |x[i]|, as the loop `m = std::max(m, std::fabs(x[i]))` from m = 0 gives it: NaNs are skipped
// (std::max(m, NaN) keeps m; so does std::fmax). 16 running maxima let the compiler vectorise; max over non-NaN values is
// exact and independent of order, so the result is the sequential loop's bit for bit.
float absmax_of(const float* x, int64_t len) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= len; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] = std::max(lanes[l], std::fabs(x[i + l]));
  float m = 0.0f;
  for (; i < len; ++i) m = std::max(m, std::fabs(x[i]));
  for (float lane : lanes) m = std::max(m, lane);
  return m;
}

// The index of the entry of `code` (256 sorted values) nearest to x, ties to the left: the entry at or left
// of x (upper_bound - 1, at least 0), then its right neighbour when strictly nearer. The search is
// branch-free (binary lifting over a fixed 8 steps), so that a data-dependent branch is not mispredicted
// once per value. NaN compares false everywhere and gives 0.
inline uint8_t nearest_8bit(float x, const std::array<float, 256>& code) {
  int32_t at_or_below = 0;  // entries <= x, lifted to min(count, 255), then the last entry checked
  for (int32_t step = 128; step >= 1; step /= 2) at_or_below += code[at_or_below + step - 1] <= x ? step : 0;
  at_or_below += code[at_or_below] <= x ? 1 : 0;
  const int32_t left = std::max(at_or_below - 1, 0), right = std::min(left + 1, 255);
  return static_cast<uint8_t>(std::fabs(x - code[right]) < std::fabs(x - code[left]) ? right : left);
}

void check_blocksize(int64_t blocksize, const char* what) {
  static const int64_t allowed[] = {32, 64, 128, 256, 512, 1024, 2048, 4096};
  if (std::find(std::begin(allowed), std::end(allowed), blocksize) == std::end(allowed))
    throw Error(std::string(what) + ": blocksize " + std::to_string(blocksize) +
                " is not one of 32, 64, 128, 256, 512, 1024, 2048, 4096");
}

}  // namespace

QuantType parse_quant_type(const std::string& name) {
  if (name == "nf4") return QuantType::nf4;
  if (name == "fp4") return QuantType::fp4;
  throw Error("4-bit quant type \"" + name + "\" is unknown; use nf4 or fp4");
}

const std::array<float, 16>& code_4bit(QuantType type) { return type == QuantType::nf4 ? kNf4 : kFp4; }

const std::array<float, 256>& dynamic_map_8bit() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for each exponent i, the means of
  // a float32 linspace(0.1, 1, 2^i + 1) scaled by 10^(i - 6), with both signs; then 0 and 1; sorted.
  // The linspace is libtorch's, so the float32 values are the oracle's bit for bit.
  static const std::array<float, 256> map = [] {
    std::vector<double> data;
    const int max_exponent_bits = 7, non_sign_bits = 7;
    for (int i = 0; i < max_exponent_bits; ++i) {
      int64_t items = (int64_t{1} << (i + non_sign_bits - max_exponent_bits)) + 1;
      at::Tensor bounds = at::linspace(0.1, 1.0, items, at::kFloat);
      at::Tensor means = (bounds.slice(0, 0, items - 1) + bounds.slice(0, 1, items)) / 2.0;
      // The product is a float32 tensor op with a double scalar, as in the Python original.
      const double scale = std::pow(10.0, -(max_exponent_bits - 1) + i);
      for (const at::Tensor& scaled : {means * scale, means * -scale}) {
        auto accessor = scaled.accessor<float, 1>();
        for (int64_t k = 0; k < items - 1; ++k) data.push_back(accessor[k]);
      }
    }
    data.push_back(0.0);
    data.push_back(1.0);
    while (data.size() < 256) data.push_back(0.0);
    std::array<float, 256> out;
    for (size_t k = 0; k < 256; ++k) out[k] = static_cast<float>(data[k]);
    std::sort(out.begin(), out.end());
    return out;
  }();
  return map;
}

Quantized8bit quantize_blockwise_8bit(const at::Tensor& values, int64_t blocksize) {
  check_blocksize(blocksize, "8-bit quantization");
  at::Tensor flat = values.reshape(-1).to(at::kFloat).contiguous();
  const int64_t n = flat.numel(), blocks = (n + blocksize - 1) / blocksize;
  Quantized8bit q;
  q.blocksize = blocksize;
  q.codes = at::empty({n}, at::kByte);
  q.absmax = at::empty({blocks}, at::kFloat);
  // bitsandbytes' CPU kernel searches a copy of the map whose first entry is -1 (its stored map keeps
  // -0.993): a value below the smallest entry would otherwise break its binary search.
  std::array<float, 256> code = dynamic_map_8bit();
  code[0] = -1.0f;
  const float* x = flat.data_ptr<float>();
  uint8_t* out = q.codes.data_ptr<uint8_t>();
  float* absmax = q.absmax.data_ptr<float>();
  at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t first = block * blocksize, last = std::min(n, first + blocksize);
      const float m = absmax_of(x + first, last - first);
      absmax[block] = m;
      // An all-zero block gives 0/0 = NaN, for which nearest_8bit gives code 0, as bitsandbytes stores
      // (its value times absmax 0 is 0).
      for (int64_t i = first; i < last; ++i) out[i] = nearest_8bit(x[i] / m, code);
    }
  });
  return q;
}

at::Tensor dequantize_blockwise_8bit(const Quantized8bit& q) {
  const auto& code = dynamic_map_8bit();
  const int64_t n = q.codes.numel();
  at::Tensor out = at::empty({n}, at::kFloat);
  const uint8_t* codes = q.codes.data_ptr<uint8_t>();
  const float* absmax = q.absmax.data_ptr<float>();
  float* y = out.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) y[i] = code[codes[i]] * absmax[i / q.blocksize];
  return out;
}

// code[c] * absmax is one fp32 product here as in the loop above, so the values are the same bit for bit.
at::Tensor dequantize_blockwise_8bit_torch(const Quantized8bit& q) {
  const auto& map = dynamic_map_8bit();
  const int64_t n = q.codes.numel();
  at::Tensor code = at::tensor(at::ArrayRef<float>(map.data(), map.size()), at::kFloat).to(q.codes.device());
  at::Tensor scales = q.absmax.repeat_interleave(q.blocksize).narrow(0, 0, n);
  return code.index_select(0, q.codes.to(at::kLong)) * scales;
}

int64_t Quantized4bit::numel() const {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

Quantized4bit Quantized4bit::to(at::Device device) const {
  Quantized4bit moved = *this;
  moved.packed = packed.to(device);
  if (double_quantized) {
    moved.nested.codes = nested.codes.to(device);
    moved.nested.absmax = nested.absmax.to(device);
    moved.absmax = moved.nested.codes;  // one tensor, as quantize_4bit leaves it
  } else {
    moved.absmax = absmax.to(device);
  }
  return moved;
}

int64_t Quantized4bit::bytes() const {
  int64_t total = packed.numel() + absmax.numel() * absmax.element_size();
  if (double_quantized) total += nested.absmax.numel() * 4 + 4;
  return total;
}

namespace {

// The 4-bit codes of one block x[0, len) with absmax m, written to codes[0, len). bitsandbytes multiplies
// full blocks by the reciprocal of max(m, 1e-38) but divides the last, partial block by it; either result
// is clamped to [-1, 1]. Two loops rather than a branch per element, so that each vectorises; `b` is taken
// by value, so that the compiler knows the stores to `codes` cannot change it.
void encode_block(const float* x, int64_t len, float m, bool full, const Boundaries b, uint8_t* codes) {
  const float clamped = std::max(m, 1e-38f);
  if (full) {
    const float reciprocal = 1.0f / clamped;
    for (int64_t i = 0; i < len; ++i) codes[i] = code_of(std::clamp(x[i] * reciprocal, -1.0f, 1.0f), b);
  } else {
    for (int64_t i = 0; i < len; ++i) codes[i] = code_of(std::clamp(x[i] / clamped, -1.0f, 1.0f), b);
  }
}

// Blocks [begin, end) of the flat weight x (n elements) into their absmax and packed bytes. Each block is
// converted to fp32 in a buffer of its own (the exact conversion Tensor::to(kFloat) makes), so a bf16 or
// fp16 weight is never copied whole. Blocks are even-sized: a block starts on a byte, and only the last
// block can be odd, whose last byte then takes the code of a zero value in its low nibble (bitsandbytes
// pads with 0).
template <typename T>
void quantize_4bit_blocks(const T* x, int64_t n, int64_t blocksize, const Boundaries& b, int64_t begin,
                          int64_t end, float* absmax, uint8_t* packed) {
  std::array<float, 4096> values;   // blocksize <= 4096 (check_blocksize)
  std::array<uint8_t, 4096> codes;
  for (int64_t block = begin; block < end; ++block) {
    const int64_t first = block * blocksize, len = std::min(n, first + blocksize) - first;
    for (int64_t i = 0; i < len; ++i) values[i] = static_cast<float>(x[first + i]);
    absmax[block] = absmax_of(values.data(), len);
    encode_block(values.data(), len, absmax[block], len == blocksize, b, codes.data());
    uint8_t* out = packed + first / 2;
    for (int64_t j = 0; j < len / 2; ++j) out[j] = static_cast<uint8_t>(codes[2 * j] << 4 | codes[2 * j + 1]);
    if (len % 2 == 1) out[len / 2] = static_cast<uint8_t>(codes[len - 1] << 4 | code_of(0.0f, b));
  }
}

// bitsandbytes' compress_statistics: the fp32 absmax vector (on the CPU) minus its mean, quantized to
// 8 bits in blocks of 256; `absmax` of q then holds the 8-bit codes.
void double_quantize_absmax(Quantized4bit& q, const at::Tensor& absmax) {
  q.double_quantized = true;
  q.offset = absmax.mean().item<float>();
  q.nested = quantize_blockwise_8bit(absmax - q.offset, 256);
  q.absmax = q.nested.codes;
}

}  // namespace

Quantized4bit quantize_4bit(const at::Tensor& weight, QuantType type, int64_t blocksize, bool double_quantize) {
  check_blocksize(blocksize, "4-bit quantization");
  if (!weight.is_floating_point()) throw Error("4-bit quantization needs a floating-point weight");
  at::Tensor flat = weight.reshape(-1);
  const at::ScalarType dtype = flat.scalar_type();
  // fp32, fp16 and bf16 are read as they are; another float type (fp64, fp8) is converted whole first.
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16) flat = flat.to(at::kFloat);
  flat = flat.contiguous();
  const int64_t n = flat.numel(), blocks = (n + blocksize - 1) / blocksize;
  Quantized4bit q;
  q.type = type;
  q.blocksize = blocksize;
  q.shape = weight.sizes().vec();
  q.packed = at::empty({(n + 1) / 2}, at::kByte);
  at::Tensor absmax = at::empty({blocks}, at::kFloat);
  const Boundaries b = boundaries_of(code_4bit(type));
  auto run = [&](const auto* x) {
    // No byte is shared between two blocks, so blocks can run in parallel.
    at::parallel_for(0, blocks, std::max<int64_t>(1, (1 << 16) / blocksize), [&](int64_t begin, int64_t end) {
      quantize_4bit_blocks(x, n, blocksize, b, begin, end, absmax.data_ptr<float>(), q.packed.data_ptr<uint8_t>());
    });
  };
  if (flat.scalar_type() == at::kFloat) run(flat.data_ptr<float>());
  else if (flat.scalar_type() == at::kHalf) run(flat.data_ptr<at::Half>());
  else run(flat.data_ptr<at::BFloat16>());
  if (double_quantize) double_quantize_absmax(q, absmax);
  else q.absmax = absmax;
  return q;
}

namespace {

// The absmax of every block of the flat fp32 weight: full blocks reduced as rows of a (blocks, blocksize)
// view, the partial last block on its own. NaNs are set to 0 first: quantize_4bit's max skips them, while
// amax would return NaN.
at::Tensor block_absmax_torch(const at::Tensor& flat, int64_t blocksize) {
  const int64_t n = flat.numel(), full = n / blocksize, head = full * blocksize;
  at::Tensor magnitude = flat.abs();
  magnitude.masked_fill_(magnitude.isnan(), 0.0f);
  at::Tensor absmax = magnitude.narrow(0, 0, head).view({full, blocksize}).amax(1);
  if (head == n) return absmax;
  return at::cat({absmax, magnitude.narrow(0, head, n - head).amax().unsqueeze(0)});
}

// The weight scaled into [-1, 1] as quantize_4bit scales it: full blocks times the reciprocal of
// max(absmax, 1e-38), the partial last block divided by it (bitsandbytes' rule), then clamped. The divisor
// is a tensor on the weight's device: a CPU scalar would make CUDA multiply by its reciprocal instead.
// n + n % 2 values: an odd count ends with bitsandbytes' zero pad.
at::Tensor scale_blocks_torch(const at::Tensor& flat, const at::Tensor& absmax, int64_t blocksize) {
  const int64_t n = flat.numel(), full = n / blocksize, head = full * blocksize;
  const at::Tensor clamped = absmax.clamp_min(1e-38f);
  at::Tensor scaled = at::zeros({n + n % 2}, flat.options());
  at::Tensor full_blocks = scaled.narrow(0, 0, head).view({full, blocksize});
  at::mul_out(full_blocks, flat.narrow(0, 0, head).view({full, blocksize}),
              clamped.narrow(0, 0, full).reciprocal().unsqueeze(1));
  if (head < n) {
    at::Tensor partial_block = scaled.narrow(0, head, n - head);
    at::div_out(partial_block, flat.narrow(0, head, n - head), clamped.narrow(0, full, 1));
  }
  return scaled.clamp_(-1.0f, 1.0f);
}

// The 4-bit codes of scaled values, two per byte, the first in the high nibble. The code search is
// code_of's: bucketize gives the number of midpoints strictly below x, index_of_sorted maps it to a code.
// bucketize's binary search sends NaN past the last midpoint where code_of counts none below it, so NaN is
// first set to -1, which has none below it either.
at::Tensor pack_codes_torch(at::Tensor scaled, const Boundaries& b) {
  const at::Device device = scaled.device();
  const at::Tensor midpoints =
      at::tensor(at::ArrayRef<float>(b.midpoints.data(), b.midpoints.size()), at::kFloat).to(device);
  const at::Tensor index_of_sorted =
      at::tensor(at::ArrayRef<uint8_t>(b.index_of_sorted.data(), b.index_of_sorted.size()), at::kByte).to(device);
  scaled.masked_fill_(scaled.isnan(), -1.0f);
  at::Tensor codes = index_of_sorted.index_select(0, at::bucketize(scaled, midpoints, /*out_int32=*/true)).view({-1, 2});
  return at::bitwise_or(at::bitwise_left_shift(codes.select(1, 0), 4), codes.select(1, 1));
}

}  // namespace

// quantize_4bit step for step in ATen ops, so that it runs on the weight's device. Every step is exact
// (abs, max, IEEE multiply and divide, comparisons), so the bytes are the CPU loop's. Double quantization
// runs on the CPU (quantize_4bit's own code): the mean's reduction order must be the CPU's, and the absmax
// vector is 1/blocksize of the weight.
Quantized4bit quantize_4bit_torch(const at::Tensor& weight, QuantType type, int64_t blocksize, bool double_quantize) {
  check_blocksize(blocksize, "4-bit quantization");
  if (!weight.is_floating_point()) throw Error("4-bit quantization needs a floating-point weight");
  const at::Tensor flat = weight.reshape(-1).to(at::kFloat).contiguous();
  Quantized4bit q;
  q.type = type;
  q.blocksize = blocksize;
  q.shape = weight.sizes().vec();
  at::Tensor absmax = block_absmax_torch(flat, blocksize);
  q.packed = pack_codes_torch(scale_blocks_torch(flat, absmax, blocksize), boundaries_of(code_4bit(type)));
  if (!double_quantize) {
    q.absmax = absmax;
    return q;
  }
  double_quantize_absmax(q, absmax.cpu());
  return q.to(weight.device());
}

namespace {

// The absmax of every block, the nested 8-bit statistics dequantized by `dequantize_8bit` when present.
at::Tensor absmax_of(const Quantized4bit& q, at::Tensor (*dequantize_8bit)(const Quantized8bit&)) {
  if (!q.double_quantized) return q.absmax;
  return dequantize_8bit(q.nested) + q.offset;
}

}  // namespace

at::Tensor block_absmax(const Quantized4bit& q) {
  const bool on_cpu = q.absmax.device().is_cpu();
  return absmax_of(q, on_cpu ? dequantize_blockwise_8bit : dequantize_blockwise_8bit_torch);
}

at::Tensor packed_rows(const Quantized4bit& q) {
  if (!q.gemv_tiles) return q.packed;
  if (q.shape.size() != 2 || q.shape[1] % 64 != 0)
    throw Error("packed_rows: the gemv_tiles layout needs a 2-D weight whose columns are a multiple of 64");
  // [tile][chunk][g][t][h][byte] (cuda_kernels.h) back to [tile][h][g][chunk][t][byte], i.e. row 16 tile + 8 h + g,
  // packed byte 32 chunk + 8 t + byte; then the padding rows of the last tile cut off.
  const int64_t rows = q.shape[0], cols = q.shape[1], tiles = (rows + 15) / 16;
  return q.packed.view({tiles, cols / 64, 8, 4, 2, 8})
      .permute({0, 4, 2, 1, 3, 5})
      .reshape({tiles * 16, cols / 2})
      .narrow(0, 0, rows)
      .reshape(-1);
}

at::Tensor dequantize_4bit(const Quantized4bit& q, at::ScalarType dtype) {
  const auto& code = code_4bit(q.type);
  const int64_t n = q.numel();
  at::Tensor absmax = block_absmax(q).contiguous();
  at::Tensor out = at::empty({n}, at::kFloat);
  const at::Tensor bytes = packed_rows(q).contiguous();
  const uint8_t* packed = bytes.data_ptr<uint8_t>();
  const float* am = absmax.data_ptr<float>();
  float* y = out.data_ptr<float>();
  // Block by block, two values per byte: no division per element (this runs in every forward and
  // backward of a quantized layer). Element i sits in the high nibble of byte i/2 when i is even.
  const int64_t blocksize = q.blocksize;
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  at::parallel_for(0, blocks, std::max<int64_t>(1, (1 << 14) / blocksize), [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const float scale = am[b];
      int64_t i = b * blocksize;
      const int64_t end = std::min(n, i + blocksize);
      if (i % 2 == 1 && i < end) {
        y[i] = code[packed[i / 2] & 0x0F] * scale;
        ++i;
      }
      for (; i + 1 < end; i += 2) {
        const uint8_t byte = packed[i / 2];
        y[i] = code[byte >> 4] * scale;
        y[i + 1] = code[byte & 0x0F] * scale;
      }
      if (i < end) y[i] = code[packed[i / 2] >> 4] * scale;
    }
  });
  return out.reshape(q.shape).to(dtype);
}

// The same values as dequantize_4bit, bit for bit: code * absmax is one fp32 product either way, then a cast.
at::Tensor dequantize_4bit_torch(const Quantized4bit& q, at::ScalarType dtype) {
  const auto& table = code_4bit(q.type);
  const int64_t n = q.numel();
  // Element 2i is the high nibble of byte i, element 2i + 1 the low one; an odd count leaves a pad nibble.
  const at::Tensor packed = packed_rows(q);
  at::Tensor codes = at::stack({at::bitwise_right_shift(packed, 4), at::bitwise_and(packed, 15)}, 1)
                         .reshape(-1)
                         .narrow(0, 0, n)
                         .to(at::kLong);
  at::Tensor code = at::tensor(at::ArrayRef<float>(table.data(), table.size()), at::kFloat).to(q.packed.device());
  at::Tensor scales = absmax_of(q, dequantize_blockwise_8bit_torch).repeat_interleave(q.blocksize).narrow(0, 0, n);
  return (code.index_select(0, codes) * scales).reshape(q.shape).to(dtype);
}

}  // namespace autotrain
