// llama.cpp's block quantizers, re-implemented from the algorithms of ggml-quants.c's reference functions
// (quantize_row_*_ref: what llama-quantize runs without an importance matrix) and of its quantize_row_*_impl (what
// it runs with one, the "weighted" paths below) so that each block's bytes are llama.cpp's. That needs the same
// float operations in the same order: this file is compiled with -ffp-contract=off (no fused multiply-adds), and
// rounding goes through nearest_int below, ggml's own trick.
#include "autotrain/ggml_quants.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "autotrain/error.h"

namespace autotrain {

namespace {

constexpr int64_t kSuperBlock = 256;  // QK_K: the values of one K-quant block

uint16_t half_bits(float value) { return c10::Half(value).x; }  // round to nearest even, as ggml's fp32 -> fp16
float from_half(const uint8_t* bytes) {
  uint16_t bits;
  std::memcpy(&bits, bytes, 2);
  return float(c10::Half(bits, c10::Half::from_bits()));
}
void put_half(uint8_t* bytes, float value) {
  const uint16_t bits = half_bits(value);
  std::memcpy(bytes, &bits, 2);
}

// ggml's nearest_int: x + 1.5 * 2^23 puts round(x) (ties to even) in the low mantissa bits. For |x| up to 2^22;
// beyond that the result is as wrong as ggml's, which matters only for the bytes to stay the same.
int nearest_int(float value) {
  const float biased = value + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &biased, 4);
  return (bits & 0x007fffff) - 0x00400000;
}

// lo..hi, written as ggml's MAX(lo, MIN(hi, value)) macros are: GCC compiles std::max(lo, std::min(hi, value))
// here into branches, which the codes at either end of a 2-bit range mispredict (q2_K ran at 0.58x ggml's speed).
inline int clamp_int(int value, int lo, int hi) { return value < lo ? lo : (value > hi ? hi : value); }

// ---- 32-value blocks ------------------------------------------------------------------------------------------

// The value of largest magnitude, with its sign (the first such in a tie).
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

void min_max(const float* x, int n, float* min, float* max) {
  *min = FLT_MAX;
  *max = -FLT_MAX;
  for (int i = 0; i < n; ++i) {
    if (x[i] < *min) *min = x[i];
    if (x[i] > *max) *max = x[i];
  }
}

// Symmetric 4 / 5-bit codes (q4_0, q5_0): d = max / -2^(bits-1), so that the largest magnitude is code 0.
// (Templates here and below: the compiler specialises ggml's static functions for their constant arguments too.)
template <int bits>
void quantize_symmetric(const float* x, uint8_t* block) {
  constexpr int offset = 1 << (bits - 1), top = (1 << bits) - 1;
  const float d = signed_absmax(x, 32) / float(-offset);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(block, d);
  uint8_t* qs = block + (bits == 5 ? 6 : 2);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const int q0 = std::min(top, int(x[j] * id + (float(offset) + 0.5f)));
    const int q1 = std::min(top, int(x[j + 16] * id + (float(offset) + 0.5f)));
    qs[j] = uint8_t((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    if constexpr (bits == 5) {
      qh |= uint32_t((q0 >> 4) & 1) << j;
      qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
  }
  if constexpr (bits == 5) std::memcpy(block + 2, &qh, 4);
}

// Asymmetric codes with a min (q4_1, q5_1): d = (max - min) / (2^bits - 1).
template <int bits>
void quantize_with_min(const float* x, uint8_t* block) {
  constexpr int top = (1 << bits) - 1;
  float min, max;
  min_max(x, 32, &min, &max);
  const float d = (max - min) / float(top);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(block, d);
  put_half(block + 2, min);
  uint8_t* qs = block + (bits == 5 ? 8 : 4);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    // q4_1 clamps to 15; q5_1 keeps ggml's plain byte cast ((max - min) * id + 0.5 stays below 32 anyway).
    auto code = [&](float v) {
      const int q = int((v - min) * id + 0.5f);
      return bits == 4 ? std::min(top, q) : q & 0xFF;
    };
    const int q0 = code(x[j]), q1 = code(x[j + 16]);
    qs[j] = uint8_t((q0 & 0x0F) | ((q1 & 0x0F) << 4));
    if constexpr (bits == 5) {
      qh |= uint32_t((q0 >> 4) & 1) << j;
      qh |= uint32_t((q1 >> 4) & 1) << (j + 16);
    }
  }
  if constexpr (bits == 5) std::memcpy(block + 4, &qh, 4);
}

void quantize_q8_0_block(const float* x, uint8_t* block) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(block, d);
  for (int i = 0; i < 32; ++i) block[2 + i] = uint8_t(int8_t(std::round(x[i] * id)));  // half away from zero
}

// ---- K-quants (256-value blocks) ------------------------------------------------------------------------------

// ggml's make_qkx2_quants: codes 0..nmax with a scale and a min (returned negated in *the_min) for n values,
// choosing among nstep + 1 trial scales the one of least weighted squared error (absolute error where
// use_mad: q2_K), each refined by least squares.
template <int n, int nmax, bool use_mad = false>
float fit_scale_and_min(const float* x, const float* weights, uint8_t* L, float* the_min, float rmin, float rdelta,
                        int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.0f;
  }
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(clamp_int(l, 0, nmax));
    const float diff = scale * float(L[i]) + min - x[i];
    best_error += weights[i] * (use_mad ? std::fabs(diff) : diff * diff);
  }
  uint8_t trial[n];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float error = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * float(trial[i]) + this_min - x[i];
        error += weights[i] * (use_mad ? std::fabs(diff) : diff * diff);
      }
      if (error < best_error) {
        std::memcpy(L, trial, size_t(n));
        best_error = error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The 6-bit scale and min of sub-block j in q4_K / q5_K's 12 bytes (ggml's get_scale_min_k4).
void scale_and_min_of(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// ggml's make_qp_quants (with an importance matrix: the block scales of q2_K, q4_K, q5_K): codes 0..nmax for n
// non-negative values (scales or mins), the scale of least squared error weighted by qw among 9 trial scales, then
// each code in turn moved to where it most raises the fit (up to five sweeps); returns the least-squares scale.
// The codes are uint8_t as ggml's, so that a negative value wraps as it does there.
template <int n, int nmax>
float fit_positive_scale(const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];
  if (max < 1e-15f) {  // GROUP_MAX_EPS: all zero
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  float iscale = float(nmax) / max;
  for (int i = 0; i < n; ++i) L[i] = uint8_t(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * float(L[i]);
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * float(is) + float(nmax)) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * float(l);
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = uint8_t(l);
    sumlx += qw[i] * x[i] * float(l);
    suml2 += qw[i] * float(l) * float(l);
  }
  for (int sweep = 0; sweep < 5; ++sweep) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = qw[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      float sl2 = suml2 - w * float(L[i]) * float(L[i]);
      if (!(slx > 0 && sl2 > 0)) continue;
      const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
      if (new_l == int(L[i])) continue;
      slx += w * x[i] * float(new_l);
      sl2 += w * float(new_l) * float(new_l);
      if (slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = uint8_t(new_l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// The importance of each of n values for the weighted fits: qw * sqrt(sigma2 + x^2), sigma2 a mean square of the
// row or block (ggml's quantize_row_*_impl); returns their sum.
template <int n>
float importance_weights(const float* x, const float* qw, float sigma2, float* weights) {
  float sum = 0;
  for (int l = 0; l < n; ++l) weights[l] = qw[l] * std::sqrt(sigma2 + x[l] * x[l]);
  for (int l = 0; l < n; ++l) sum += weights[l];
  return sum;
}

float sum_of_squares(const float* x, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

// q4_K and q5_K: eight sub-blocks of 32 with a scale and a min each, stored as 6-bit multiples of the block's
// fp16 d and dmin; L gets each value's code 0..nmax. With importance weights qw (256 of them) each sub-block is
// fitted to least squared error weighted by qw * sqrt(sigma2 + x^2) and the 6-bit scales by make_qp_quants.
template <int nmax>
void quantize_k_scales(const float* x, uint8_t* header, uint8_t* L, const float* qw) {
  float scales[8], mins[8], weights[32];
  uint8_t Ls[8], Lm[8];
  float d, dmin;
  if (qw == nullptr) {
    const float rmin = nmax == 15 ? -1.0f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      const float* sub = x + 32 * j;
      const float av_x = std::sqrt(sum_of_squares(sub, 32) / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(sub[l]);
      scales[j] = fit_scale_and_min<32, nmax>(sub, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      Ls[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_scale * scales[j])));
      Lm[j] = std::min<uint8_t>(63, uint8_t(nearest_int(inv_min * mins[j])));
    }
    d = max_scale / 63.f;
    dmin = max_min / 63.f;
  } else {
    const float sigma2 = 2 * sum_of_squares(x, kSuperBlock) / kSuperBlock;
    float sw[8];
    for (int j = 0; j < 8; ++j) {
      sw[j] = importance_weights<32>(x + 32 * j, qw + 32 * j, sigma2, weights);
      scales[j] = fit_scale_and_min<32, nmax>(x + 32 * j, weights, L + 32 * j, &mins[j], -0.9f, 0.05f, 36);
    }
    d = fit_positive_scale<8, 63>(scales, Ls, sw);
    dmin = fit_positive_scale<8, 63>(mins, Lm, sw);
    if (nmax == 31) {  // q5_K clamps them (q4_K's weighted path does not)
      for (int j = 0; j < 8; ++j) {
        Ls[j] = std::min<uint8_t>(63, Ls[j]);
        Lm[j] = std::min<uint8_t>(63, Lm[j]);
      }
    }
  }
  uint8_t* q = header + 4;
  for (int j = 0; j < 8; ++j) {
    const uint8_t ls = Ls[j], lm = Lm[j];
    if (j < 4) {
      q[j] = ls;
      q[j + 4] = lm;
    } else {
      q[j + 4] = uint8_t((ls & 0xF) | ((lm & 0xF) << 4));
      q[j - 4] |= uint8_t((ls >> 4) << 6);
      q[j] |= uint8_t((lm >> 4) << 6);
    }
  }
  put_half(header, d);
  put_half(header + 2, dmin);
  for (int j = 0; j < 8; ++j) {  // the codes again, against the scales as stored
    uint8_t sc, m;
    scale_and_min_of(j, q, &sc, &m);
    const float dj = from_half(header) * float(sc);
    if (dj == 0.0f) continue;
    const float dm = from_half(header + 2) * float(m);
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] = uint8_t(clamp_int(nearest_int((x[32 * j + i] + dm) / dj), 0, nmax));
  }
}

void quantize_q4_K_block(const float* x, uint8_t* block, const float* qw) {
  uint8_t L[kSuperBlock];
  quantize_k_scales<15>(x, block, L, qw);
  uint8_t* q = block + 16;
  for (int j = 0; j < kSuperBlock; j += 64, q += 32) {
    for (int l = 0; l < 32; ++l) q[l] = uint8_t(L[j + l] | (L[j + l + 32] << 4));
  }
}

void quantize_q5_K_block(const float* x, uint8_t* block, const float* qw) {
  uint8_t L[kSuperBlock];
  quantize_k_scales<31>(x, block, L, qw);
  uint8_t* qh = block + 16;
  uint8_t* ql = block + 48;
  std::memset(qh, 0, 32);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kSuperBlock; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        qh[j] |= m2;
      }
      ql[j] = uint8_t(l1 | (l2 << 4));
    }
  }
}

// Four 2-bit codes a byte, as q2_K and q3_K store them: byte l of each 32-byte group holds the codes of values
// l, l + 32, l + 64 and l + 96 of its 128, from the low bits up.
void pack_2bit_codes(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kSuperBlock; j += 128, qs += 32) {
    for (int l = 0; l < 32; ++l)
      qs[l] = uint8_t(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
  }
}

// q2_K: sixteen sub-blocks of 16, each with a scale and a min fitted to least absolute error weighted by |x|,
// stored as 4-bit multiples of the block's fp16 d and dmin (scale in the low nibble, min in the high). With
// importance weights qw: fitted to least squared error weighted by qw * sqrt(sigma2 + x^2), the 4-bit scales and
// mins by make_qp_quants.
void quantize_q2_K_block(const float* x, uint8_t* block, const float* qw) {
  uint8_t L[kSuperBlock];
  float scales[16], mins[16], weights[16];
  uint8_t* sc = block;
  uint8_t* d_bytes = block + 80;
  uint8_t* dmin_bytes = block + 82;
  if (qw == nullptr) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = fit_scale_and_min<16, 3, true>(x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    constexpr float kLevels = 15.f;
    if (max_scale > 0) {
      const float iscale = kLevels / max_scale;
      for (int j = 0; j < 16; ++j) sc[j] = uint8_t(nearest_int(iscale * scales[j]));
      put_half(d_bytes, max_scale / kLevels);
    } else {
      std::memset(sc, 0, 16);
      put_half(d_bytes, 0.f);
    }
    if (max_min > 0) {
      const float iscale = kLevels / max_min;
      for (int j = 0; j < 16; ++j) sc[j] |= uint8_t(nearest_int(iscale * mins[j]) << 4);
      put_half(dmin_bytes, max_min / kLevels);
    } else {
      put_half(dmin_bytes, 0.f);
    }
  } else {
    const float sigma2 = sum_of_squares(x, kSuperBlock) / kSuperBlock;
    float sw[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = importance_weights<16>(x + 16 * j, qw + 16 * j, sigma2, weights);
      scales[j] = fit_scale_and_min<16, 3>(x + 16 * j, weights, L + 16 * j, &mins[j], -0.9f, 0.05f, 36);
    }
    uint8_t Ls[16], Lm[16];
    put_half(d_bytes, fit_positive_scale<16, 15>(scales, Ls, sw));
    put_half(dmin_bytes, fit_positive_scale<16, 15>(mins, Lm, sw));
    for (int j = 0; j < 16; ++j) sc[j] = uint8_t(Ls[j] | (Lm[j] << 4));
  }
  for (int j = 0; j < 16; ++j) {  // the codes again, against the scales as stored
    const float d = from_half(d_bytes) * float(sc[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = from_half(dmin_bytes) * float(sc[j] >> 4);
    for (int i = 0; i < 16; ++i)
      L[16 * j + i] = uint8_t(clamp_int(nearest_int((x[16 * j + i] + dm) / d), 0, 3));
  }
  pack_2bit_codes(L, block + 16);
}

// ggml's make_q3_quants with do_rmse: symmetric codes -nmax..nmax-1 (returned + nmax) for n values, first by
// the largest magnitude, then each code in turn moved to where it most lowers the error weighted by x^2 (up to
// five sweeps); returns the least-squares scale.
template <int n, int nmax>
float fit_q3_scale(const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < 1e-15f) {  // GROUP_MAX_EPS: all zero
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  auto clamp = [](int l) { return clamp_int(l, -nmax, nmax - 1); };
  const float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = clamp(nearest_int(iscale * x[i]));
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int sweep = 0; sweep < 5; ++sweep) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (!(slx > 0)) continue;  // as ggml's `if (slx > 0)`, NaN included
      float sl2 = suml2 - w * float(L[i]) * float(L[i]);
      const int new_l = clamp(nearest_int(x[i] * sl2 / slx));
      if (new_l == L[i]) continue;
      slx += w * x[i] * float(new_l);
      sl2 += w * float(new_l) * float(new_l);
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = int8_t(new_l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Each of a super-block's sixteen 16-value sub-blocks fitted by `fit(j)` (its codes into L, its scale returned, kept
// in `scales`); returns the scale of largest magnitude, with its sign (the first such), which the block's d is made
// from.
template <typename Fit>
float fit_sub_blocks(float* scales, Fit fit) {
  float max_scale = 0, max_abs_scale = 0;
  for (int j = 0; j < 16; ++j) {
    scales[j] = fit(j);
    if (std::fabs(scales[j]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  return max_scale;
}

// The signed 6-bit scale of q3_K's sub-block j (of 16) from its 12 bytes: the low 4 bits in a nibble of bytes
// 0..7, the high 2 in bytes 8..11; stored + 32.
int q3_K_scale(const uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return (low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

// Puts sub-block j's stored scale l (0..63, the signed scale + 32) into q3_K's 12 scale bytes (zeroed before).
void put_q3_K_scale(uint8_t* sc, int j, int l) {
  if (j < 8) {
    sc[j] = uint8_t(l & 0xF);
  } else {
    sc[j - 8] |= uint8_t((l & 0xF) << 4);
  }
  sc[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
}

// q3_K's last pass, with the scales and d stored: the codes -4..3 again against them (L keeps the fit's code where
// a sub-block's scale is 0), their high bit into the 32-byte mask (bit k of byte m for value 32 k + m), the low two
// bits packed.
void finish_q3_K_block(const float* x, int8_t* L, uint8_t* block) {
  uint8_t* hmask = block;
  const uint8_t* sc = block + 96;
  const float d_block = from_half(block + 108);
  for (int j = 0; j < 16; ++j) {
    const float d = d_block * float(q3_K_scale(sc, j));
    if (d == 0.0f) continue;
    for (int i = 0; i < 16; ++i)
      L[16 * j + i] = int8_t(clamp_int(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
  }
  std::memset(hmask, 0, 32);
  uint8_t low[kSuperBlock];
  for (int j = 0; j < kSuperBlock; ++j) {
    const int m = j % 32, bit = j / 32;
    if (L[j] > 3) hmask[m] |= uint8_t(1 << bit);
    low[j] = uint8_t(L[j] > 3 ? L[j] - 4 : L[j]);
  }
  pack_2bit_codes(low, block + 32);
}

// q3_K: sixteen sub-blocks of 16 with a signed scale each, stored as 6-bit multiples of the block's fp16 d.
void quantize_q3_K_block(const float* x, uint8_t* block) {
  int8_t L[kSuperBlock];
  float scales[16];
  const float max_scale = fit_sub_blocks(scales, [&](int j) { return fit_q3_scale<16, 4>(x + 16 * j, L + 16 * j); });
  uint8_t* sc = block + 96;
  std::memset(sc, 0, 12);
  if (max_scale != 0.0f) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < 16; ++j)
      put_q3_K_scale(sc, j, clamp_int(int(int8_t(nearest_int(iscale * scales[j]))), -32, 31) + 32);
    put_half(block + 108, 1 / iscale);
  } else {
    put_half(block + 108, 0.f);
  }
  finish_q3_K_block(x, L, block);
}

// ggml's make_qx_quants with rmse_type 1: symmetric codes -nmax..nmax-1 (stored + nmax) for n values and the
// scale of least weighted squared error among 19 trial scales, each refined by least squares. The weights are x^2
// (q6_K), or qw (with an importance matrix: q4_0, q5_0, q3_K, q6_K and q3_K's scales).
template <int n, int nmax, bool weighted = false>
float fit_symmetric_scale(const float* x, int8_t* L, const float* qw = nullptr) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < 1e-15f) {  // ggml's GROUP_MAX_EPS: all zero
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
  }
  auto code = [](float iscale, float v) { return clamp_int(nearest_int(iscale * v), -nmax, nmax - 1); };
  auto weight = [&](int i) { return weighted ? qw[i] : x[i] * x[i]; };
  float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = code(iscale, x[i]);
    L[i] = int8_t(l + nmax);
    const float w = weight(i);
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sumlx = suml2 = 0;
    // Unrolled 16 times (GCC's choice for a constant n) this loop spills to the stack and ran at 0.68x ggml's speed.
#pragma GCC unroll 1
    for (int i = 0; i < n; ++i) {
      const float l = float(code(iscale, x[i]));
      const float w = weight(i);
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = int8_t(nmax + code(iscale, x[i]));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// q3_K with importance weights qw: each sub-block fitted by make_qx_quants to least squared error weighted by
// qw * sqrt(sigma2 + x^2), the 6-bit scales by make_qx_quants again, weighted by each sub-block's total weight.
void quantize_q3_K_weighted(const float* x, uint8_t* block, const float* qw) {
  int8_t L[kSuperBlock];
  float scales[16], sw[16], weights[16];
  const float sigma2 = 2 * sum_of_squares(x, kSuperBlock) / kSuperBlock;
  for (int j = 0; j < 16; ++j) {
    sw[j] = importance_weights<16>(x + 16 * j, qw + 16 * j, sigma2, weights);
    scales[j] = fit_symmetric_scale<16, 4, true>(x + 16 * j, L + 16 * j, weights);
  }
  uint8_t* sc = block + 96;
  std::memset(sc, 0, 12);
  int8_t Ls[16];
  const float d_block = fit_symmetric_scale<16, 32, true>(scales, Ls, sw);
  for (int j = 0; j < 16; ++j) put_q3_K_scale(sc, j, Ls[j]);
  put_half(block + 108, d_block);
  finish_q3_K_block(x, L, block);
}

// q6_K: sixteen sub-blocks of 16 with an int8 scale each (a multiple of the block's fp16 d); codes -32..31. With
// importance weights qw the sub-blocks are fitted to least squared error weighted by them instead of by x^2.
template <bool weighted = false>
void quantize_q6_K_block(const float* x, uint8_t* block, const float* qw = nullptr) {
  int8_t L[kSuperBlock];
  float scales[16];
  const float max_scale = fit_sub_blocks(scales, [&](int j) {
    return fit_symmetric_scale<16, 32, weighted>(x + 16 * j, L + 16 * j, weighted ? qw + 16 * j : nullptr);
  });
  const float max_abs_scale = std::fabs(max_scale);
  uint8_t* ql = block;
  uint8_t* qh = block + 128;
  int8_t* sc = reinterpret_cast<int8_t*>(block + 192);
  uint8_t* d_bytes = block + 208;
  if (max_abs_scale < 1e-15f) {
    std::memset(block, 0, 210);
    return;
  }
  const float iscale = -128.f / max_scale;
  put_half(d_bytes, 1 / iscale);
  for (int ib = 0; ib < 16; ++ib) sc[ib] = int8_t(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < 16; ++j) {
    const float d = from_half(d_bytes) * float(sc[j]);
    if (d == 0.0f) continue;
    for (int i = 0; i < 16; ++i)
      L[16 * j + i] = int8_t(clamp_int(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
  }
  for (int j = 0; j < kSuperBlock; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
      ql[l] = uint8_t((q1 & 0xF) | ((q3 & 0xF) << 4));
      ql[l + 32] = uint8_t((q2 & 0xF) | ((q4 & 0xF) << 4));
      qh[l] = uint8_t((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

// 32 codes of `bits` bits as q4_0 ... q5_1 store them: the low nibbles of values j and j + 16 in byte j of qs, and
// for 5 bits the fifth bits in the 32-bit qh (bit j for value j).
template <int bits, typename Code>
void pack_32_codes(const Code* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = uint8_t((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    if constexpr (bits == 5) {
      qh |= uint32_t((L[j] >> 4) & 1) << j;
      qh |= uint32_t((L[j + 16] >> 4) & 1) << (j + 16);
    }
  }
  if constexpr (bits == 5) std::memcpy(qh_bytes, &qh, 4);
}

// q4_0 / q5_0 with importance weights qw (32) and sigma2, the row's mean square: the codes and scale of least
// squared error weighted by qw * sqrt(sigma2 + x^2) (make_qx_quants); d is not rounded before the codes.
template <int bits>
void quantize_symmetric_weighted(const float* x, uint8_t* block, const float* qw, float sigma2) {
  constexpr int offset = 1 << (bits - 1);
  float weights[32];
  int8_t L[32];
  importance_weights<32>(x, qw, sigma2, weights);
  put_half(block, fit_symmetric_scale<32, offset, true>(x, L, weights));
  pack_32_codes<bits>(L, block + (bits == 5 ? 6 : 2), block + 2);
}

// q4_1 / q5_1 with importance weights: the scale and min of least squared error weighted as above
// (make_qkx3_quants).
template <int bits>
void quantize_with_min_weighted(const float* x, uint8_t* block, const float* qw, float sigma2) {
  constexpr int top = (1 << bits) - 1;
  float weights[32], min;
  uint8_t L[32];
  importance_weights<32>(x, qw, sigma2, weights);
  put_half(block, fit_scale_and_min<32, top>(x, weights, L, &min, -0.9f, 0.05f, 36));
  put_half(block + 2, -min);
  pack_32_codes<bits>(L, block + (bits == 5 ? 8 : 4), block + 4);
}

// ---- iq4_nl / iq4_xs: 4-bit indices into a non-linear table ---------------------------------------------------

// ggml's kvalues_iq4nl: the 16 values an index stands for, times the block's (or sub-block's) scale.
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// ggml's best_index_int8: the index of the table value nearest x (the upper one of a tie).
int nearest_iq4(float x) {
  if (x <= float(kIq4Values[0])) return 0;
  if (x >= float(kIq4Values[15])) return 15;
  int lo = 0, hi = 15;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (x < float(kIq4Values[mid])) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return x - float(kIq4Values[hi - 1]) < float(kIq4Values[hi]) - x ? hi - 1 : hi;
}

// ggml's quantize_row_iq4_nl_impl with ntry 7, as quantize_iq4_nl / quantize_iq4_xs call it (what llama-quantize
// runs, with or without an importance matrix): each 32-value sub-block's scale of least squared error weighted by
// x^2 (or qw * sqrt(sigma2 + x^2)) among 15 trial scales; iq4_xs then stores them as 6-bit multiples of an fp16 d
// and fits the indices again against those. `values` 32 (iq4_nl) or 256 (iq4_xs).
template <int values>
void quantize_iq4_block(const float* x, uint8_t* block, const float* qw) {
  constexpr int sub_blocks = values / 32, ntry = 7;
  const float sigma2 = sum_of_squares(x, values) * (2.f / float(values));
  uint8_t L[values];
  float scales[sub_blocks], weights[32];
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < sub_blocks; ++ib) {
    const float* xb = x + 32 * ib;
    uint8_t* Lb = L + 32 * ib;
    if (qw) {
      importance_weights<32>(xb, qw + 32 * ib, sigma2, weights);
    } else {
      for (int j = 0; j < 32; ++j) weights[j] = xb[j] * xb[j];
    }
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    if (amax < 1e-15f) {  // GROUP_MAX_EPS
      scales[ib] = 0;
      continue;
    }
    float d = -max / float(kIq4Values[0]);
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const int l = nearest_iq4(id * xb[j]);
      Lb[j] = uint8_t(l);
      const float q = float(kIq4Values[l]), w = weights[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = float(itry + kIq4Values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const float q = float(kIq4Values[nearest_iq4(id * xb[j])]), w = weights[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scales[ib] = d;
    if (std::fabs(d) > amax_scale) {
      amax_scale = std::fabs(d);
      max_scale = d;
    }
  }
  uint8_t* q4;
  if constexpr (sub_blocks > 1) {  // iq4_xs: fp16 d, scales_h (u16), scales_l[4], qs[128]
    uint16_t scales_h = 0;
    uint8_t* scales_l = block + 4;
    const float d = -max_scale / 32;
    put_half(block, d);
    const float id = d != 0.0f ? 1 / d : 0.f;
    for (int ib = 0; ib < sub_blocks; ++ib) {
      int l = clamp_int(nearest_int(id * scales[ib]), -32, 31);
      const float dl = d * float(l);
      const float idl = dl != 0.0f ? 1 / dl : 0.f;
      for (int j = 0; j < 32; ++j) L[32 * ib + j] = uint8_t(nearest_iq4(idl * x[32 * ib + j]));
      l += 32;
      if (ib % 2 == 0) {
        scales_l[ib / 2] = uint8_t(l & 0xf);
      } else {
        scales_l[ib / 2] |= uint8_t((l & 0xf) << 4);
      }
      scales_h |= uint16_t((l >> 4) << (2 * (ib % 8)));
    }
    std::memcpy(block + 2, &scales_h, 2);
    q4 = block + 8;
  } else {  // iq4_nl: fp16 d, qs[16]; the indices again against the chosen scale
    put_half(block, scales[0]);
    const float id = scales[0] != 0.0f ? 1 / scales[0] : 0;
    for (int j = 0; j < 32; ++j) L[j] = uint8_t(nearest_iq4(id * x[j]));
    q4 = block + 2;
  }
  for (int i = 0; i < sub_blocks; ++i) {
    for (int j = 0; j < 16; ++j) q4[16 * i + j] = uint8_t(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
  }
}

// ---- dequantization (ggml's dequantize_row_*) ---------------------------------------------------------------

void dequantize_block(GgmlType type, const uint8_t* b, float* y) {
  switch (type) {
    case GgmlType::q4_0:
    case GgmlType::q4_1:
    case GgmlType::q5_0:
    case GgmlType::q5_1: {
      const bool five = type == GgmlType::q5_0 || type == GgmlType::q5_1;
      const bool with_min = type == GgmlType::q4_1 || type == GgmlType::q5_1;
      const float d = from_half(b);
      const float m = with_min ? from_half(b + 2) : 0.0f;
      const int offset = with_min ? 0 : (five ? 16 : 8);
      uint32_t qh = 0;
      if (five) std::memcpy(&qh, b + (with_min ? 4 : 2), 4);
      const uint8_t* qs = b + (with_min ? 4 : 2) + (five ? 4 : 0);
      for (int j = 0; j < 16; ++j) {
        const int h0 = five ? int((qh >> j) & 1) << 4 : 0;
        const int h1 = five ? int((qh >> (j + 16)) & 1) << 4 : 0;
        const int q0 = ((qs[j] & 0x0F) | h0) - offset, q1 = ((qs[j] >> 4) | h1) - offset;
        y[j] = with_min ? float(q0) * d + m : float(q0) * d;
        y[j + 16] = with_min ? float(q1) * d + m : float(q1) * d;
      }
      return;
    }
    case GgmlType::q8_0: {
      const float d = from_half(b);
      for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
      return;
    }
    case GgmlType::q2_K: {
      const float d = from_half(b + 80), dmin = from_half(b + 82);
      const uint8_t* q = b + 16;
      for (int n = 0, is = 0; n < kSuperBlock; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
          for (int half = 0; half < 2; ++half, ++is) {
            const float dl = d * float(b[is] & 0xF), ml = dmin * float(b[is] >> 4);
            for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
          }
        }
      }
      return;
    }
    case GgmlType::q3_K: {
      const float d = from_half(b + 108);
      const uint8_t* hmask = b;
      const uint8_t* q = b + 32;
      uint8_t m = 1;
      for (int n = 0, is = 0; n < kSuperBlock; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1)) {
          for (int half = 0; half < 2; ++half, ++is) {
            const float dl = d * float(q3_K_scale(b + 96, is));
            for (int l = 16 * half; l < 16 * half + 16; ++l)
              *y++ = dl * float(((q[l] >> shift) & 3) - ((hmask[l] & m) ? 0 : 4));
          }
        }
      }
      return;
    }
    case GgmlType::q4_K:
    case GgmlType::q5_K: {
      const bool five = type == GgmlType::q5_K;
      const float d = from_half(b), dmin = from_half(b + 2);
      const uint8_t* scales = b + 4;
      const uint8_t* qh = b + 16;
      const uint8_t* q = b + (five ? 48 : 16);
      uint8_t u1 = 1, u2 = 2;
      for (int j = 0, is = 0; j < kSuperBlock; j += 64, q += 32, is += 2, u1 <<= 2, u2 <<= 2) {
        uint8_t sc, m;
        scale_and_min_of(is, scales, &sc, &m);
        const float d1 = d * float(sc), m1 = dmin * float(m);
        scale_and_min_of(is + 1, scales, &sc, &m);
        const float d2 = d * float(sc), m2 = dmin * float(m);
        for (int l = 0; l < 32; ++l) {
          const int high1 = five && (qh[l] & u1) ? 16 : 0, high2 = five && (qh[l] & u2) ? 16 : 0;
          y[j + l] = d1 * float((q[l] & 0xF) + high1) - m1;
          y[j + l + 32] = d2 * float((q[l] >> 4) + high2) - m2;
        }
      }
      return;
    }
    case GgmlType::iq4_nl: {
      const float d = from_half(b);
      for (int j = 0; j < 16; ++j) {
        y[j] = d * float(kIq4Values[b[2 + j] & 0xf]);
        y[j + 16] = d * float(kIq4Values[b[2 + j] >> 4]);
      }
      return;
    }
    case GgmlType::iq4_xs: {
      const float d = from_half(b);
      uint16_t scales_h;
      std::memcpy(&scales_h, b + 2, 2);
      const uint8_t* qs = b + 8;
      for (int ib = 0; ib < 8; ++ib, qs += 16, y += 32) {
        const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) | (((scales_h >> (2 * ib)) & 3) << 4);
        const float dl = d * float(ls - 32);
        for (int j = 0; j < 16; ++j) {
          y[j] = dl * float(kIq4Values[qs[j] & 0xf]);
          y[j + 16] = dl * float(kIq4Values[qs[j] >> 4]);
        }
      }
      return;
    }
    case GgmlType::q6_K: {
      const float d = from_half(b + 208);
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
      for (int n = 0; n < kSuperBlock; n += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; ++l) {
          const int is = l / 16;
          const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          y[n + l] = d * float(sc[is]) * float(q1);
          y[n + l + 32] = d * float(sc[is + 2]) * float(q2);
          y[n + l + 64] = d * float(sc[is + 4]) * float(q3);
          y[n + l + 96] = d * float(sc[is + 6]) * float(q4);
        }
      }
      return;
    }
    default:
      throw Error(std::string("ggml type ") + ggml_type_info(type).name + " is not a block quantization (a bug)");
  }
}

// One block of `type` at x. With importance weights (qw: the block's own, not null), as llama-quantize quantizes with
// an importance matrix; sigma2 is then the row's mean square (x^2 summed over the row / its length: q4_0 ... q5_1).
void quantize_block(GgmlType type, const float* x, uint8_t* block, const float* qw, float sigma2) {
  const bool weighted = qw != nullptr;
  switch (type) {
    case GgmlType::q4_0:
      return weighted ? quantize_symmetric_weighted<4>(x, block, qw, sigma2) : quantize_symmetric<4>(x, block);
    case GgmlType::q5_0:
      return weighted ? quantize_symmetric_weighted<5>(x, block, qw, sigma2) : quantize_symmetric<5>(x, block);
    case GgmlType::q4_1:
      return weighted ? quantize_with_min_weighted<4>(x, block, qw, sigma2) : quantize_with_min<4>(x, block);
    case GgmlType::q5_1:
      return weighted ? quantize_with_min_weighted<5>(x, block, qw, sigma2) : quantize_with_min<5>(x, block);
    case GgmlType::q8_0: return quantize_q8_0_block(x, block);  // ggml's quantize_q8_0 ignores the weights
    case GgmlType::q2_K: return quantize_q2_K_block(x, block, qw);
    case GgmlType::q3_K: return weighted ? quantize_q3_K_weighted(x, block, qw) : quantize_q3_K_block(x, block);
    case GgmlType::q4_K: return quantize_q4_K_block(x, block, qw);
    case GgmlType::q5_K: return quantize_q5_K_block(x, block, qw);
    case GgmlType::q6_K:
      return weighted ? quantize_q6_K_block<true>(x, block, qw) : quantize_q6_K_block(x, block);
    case GgmlType::iq4_nl: return quantize_iq4_block<32>(x, block, qw);
    case GgmlType::iq4_xs: return quantize_iq4_block<256>(x, block, qw);
    default:
      throw Error(std::string("ggml type ") + ggml_type_info(type).name + " is not a block quantization (a bug)");
  }
}

bool is_float_type(GgmlType type) { return type == GgmlType::f32 || type == GgmlType::f16 || type == GgmlType::bf16; }
at::ScalarType float_dtype(GgmlType type) {
  return type == GgmlType::f32 ? at::kFloat : type == GgmlType::f16 ? at::kHalf : at::kBFloat16;
}

}  // namespace

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  static const GgmlTypeInfo kF32{"f32", 1, 4}, kF16{"f16", 1, 2}, kBf16{"bf16", 1, 2}, kQ4_0{"q4_0", 32, 18},
      kQ4_1{"q4_1", 32, 20}, kQ5_0{"q5_0", 32, 22}, kQ5_1{"q5_1", 32, 24}, kQ8_0{"q8_0", 32, 34},
      kQ2_K{"q2_K", kSuperBlock, 84}, kQ3_K{"q3_K", kSuperBlock, 110}, kQ4_K{"q4_K", kSuperBlock, 144},
      kQ5_K{"q5_K", kSuperBlock, 176}, kQ6_K{"q6_K", kSuperBlock, 210}, kIq4Nl{"iq4_nl", 32, 18},
      kIq4Xs{"iq4_xs", kSuperBlock, 136};
  switch (type) {
    case GgmlType::f32: return kF32;
    case GgmlType::f16: return kF16;
    case GgmlType::bf16: return kBf16;
    case GgmlType::q4_0: return kQ4_0;
    case GgmlType::q4_1: return kQ4_1;
    case GgmlType::q5_0: return kQ5_0;
    case GgmlType::q5_1: return kQ5_1;
    case GgmlType::q8_0: return kQ8_0;
    case GgmlType::q2_K: return kQ2_K;
    case GgmlType::q3_K: return kQ3_K;
    case GgmlType::q4_K: return kQ4_K;
    case GgmlType::q5_K: return kQ5_K;
    case GgmlType::q6_K: return kQ6_K;
    case GgmlType::iq4_nl: return kIq4Nl;
    case GgmlType::iq4_xs: return kIq4Xs;
  }
  throw Error("unknown ggml type " + std::to_string(uint32_t(type)) + " (a bug)");
}

uint64_t ggml_bytes(GgmlType type, int64_t values) {
  const GgmlTypeInfo& info = ggml_type_info(type);
  if (values % info.block_values != 0)
    throw Error(std::string(info.name) + " needs whole blocks of " + std::to_string(info.block_values) + " values");
  return uint64_t(values / info.block_values) * uint64_t(info.block_bytes);
}

at::Tensor ggml_quantize(const at::Tensor& x, GgmlType type, const at::Tensor& importance) {
  if (is_float_type(type)) return x.to(float_dtype(type)).contiguous().view(at::kByte).reshape({-1});
  const GgmlTypeInfo& info = ggml_type_info(type);
  const int64_t row = x.dim() > 0 ? x.size(-1) : 1;
  if (x.numel() % info.block_values != 0 || row % info.block_values != 0)
    throw Error(std::string(info.name) + " needs rows whose length is a multiple of " +
                std::to_string(info.block_values));
  const at::Tensor values = x.to(at::kFloat).contiguous();
  at::Tensor weights;
  if (importance.defined()) {
    if (importance.numel() != row)
      throw Error("an importance matrix of " + std::to_string(importance.numel()) + " values for rows of " +
                  std::to_string(row));
    weights = importance.to(at::kFloat).contiguous().reshape({-1});
  }
  const int64_t blocks = values.numel() / info.block_values, blocks_per_row = row / info.block_values;
  at::Tensor out = at::empty({blocks * info.block_bytes}, at::kByte);
  const float* in = values.data_ptr<float>();
  const float* qw = weights.defined() ? weights.data_ptr<float>() : nullptr;
  uint8_t* bytes = out.data_ptr<uint8_t>();
  const bool row_weighted =
      type == GgmlType::q4_0 || type == GgmlType::q4_1 || type == GgmlType::q5_0 || type == GgmlType::q5_1;
  // A K-quant block takes some microseconds (its trial scales): an 8B model's blocks want every core.
  at::parallel_for(0, blocks, 64, [&](int64_t begin, int64_t end) {
    int64_t sigma_row = -1;
    float sigma2 = 0;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t r = b / blocks_per_row, column = (b % blocks_per_row) * info.block_values;
      if (qw != nullptr && row_weighted && r != sigma_row) {  // q4_0 ... q5_1 weigh by the row's mean square
        sigma2 = sum_of_squares(in + r * row, row) / float(row);
        sigma_row = r;
      }
      quantize_block(type, in + b * info.block_values, bytes + b * info.block_bytes,
                     qw != nullptr ? qw + column : nullptr, sigma2);
    }
  });
  return out;
}

at::Tensor ggml_dequantize(const at::Tensor& bytes, GgmlType type, at::IntArrayRef shape) {
  const at::Tensor raw = bytes.contiguous().reshape({-1});
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (uint64_t(raw.numel()) != ggml_bytes(type, numel))
    throw Error(std::string(ggml_type_info(type).name) + ": " + std::to_string(raw.numel()) + " bytes for " +
                std::to_string(numel) + " values");
  if (is_float_type(type)) return raw.view(float_dtype(type)).to(at::kFloat).reshape(shape);
  const GgmlTypeInfo& info = ggml_type_info(type);
  at::Tensor out = at::empty({numel}, at::kFloat);
  const uint8_t* in = raw.data_ptr<uint8_t>();
  float* values = out.data_ptr<float>();
  at::parallel_for(0, numel / info.block_values, 256, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      dequantize_block(type, in + b * info.block_bytes, values + b * info.block_values);
  });
  return out.reshape(shape);
}

}  // namespace autotrain
