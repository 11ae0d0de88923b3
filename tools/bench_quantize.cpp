// bench_quantize [THREADS...]: CPU throughput of quantize_4bit (NF4, blocksize 64, double quantization off/on) on
// Llama-3-8B projection shapes in bf16, the dtype checkpoints are stored in; elements per second, best of 5,
// for each thread count (default: 1 and 2). Then a fingerprint (FNV-1a) of the bytes quantize_4bit returns
// for fixed inputs over NF4/FP4, double quantization on/off, blocksizes 64/256, fp32/fp16/bf16 and odd
// sizes: run it before and after a change to the quantizer, and the fingerprints must be equal.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "autotrain/quant.h"

using namespace autotrain;

namespace {

// Seconds of the fastest of 5 calls (the machine is shared: the fastest call is the least disturbed).
double best_seconds(const at::Tensor& weight, bool double_quantize) {
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    auto start = std::chrono::steady_clock::now();
    Quantized4bit q = quantize_4bit(weight, QuantType::nf4, 64, double_quantize);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

uint64_t fnv1a(uint64_t hash, const at::Tensor& tensor) {
  at::Tensor bytes = tensor.contiguous();
  const auto* data = static_cast<const unsigned char*>(bytes.data_ptr());
  for (size_t i = 0; i < bytes.nbytes(); ++i) hash = (hash ^ data[i]) * 1099511628211ull;
  return hash;
}

// One hash over everything quantize_4bit stores, for inputs drawn from a fixed seed; includes a NaN, an
// infinity and an all-zero block, whose handling must not change either.
uint64_t fingerprint() {
  at::manual_seed(3);
  uint64_t hash = 14695981039346656037ull;
  const std::vector<std::vector<int64_t>> shapes = {{1, 1}, {3, 7}, {37, 53}, {129, 200}, {1000}, {256, 257}};
  for (const auto& shape : shapes)
    for (at::ScalarType dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      at::Tensor weight = (at::randn(shape) * at::rand(shape).pow(3) * 0.2).to(dtype).reshape(-1);
      if (weight.numel() > 600) {
        weight.slice(0, 0, 64).zero_();
        weight[100] = NAN;
        weight[300] = INFINITY;
      }
      for (QuantType type : {QuantType::nf4, QuantType::fp4})
        for (bool double_quantize : {false, true})
          for (int64_t blocksize : {64, 256}) {
            Quantized4bit q = quantize_4bit(weight.reshape(shape), type, blocksize, double_quantize);
            hash = fnv1a(fnv1a(hash, q.packed), q.absmax);
            if (double_quantize) hash = fnv1a(fnv1a(fnv1a(hash, q.nested.absmax), q.nested.codes), at::tensor(q.offset));
          }
    }
  return hash;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads;
  for (int i = 1; i < argc; ++i) threads.push_back(std::atoi(argv[i]));
  if (threads.empty()) threads = {1, 2};
  struct Shape {
    const char* name;
    int64_t out, in;
  };
  const Shape shapes[] = {{"4096x4096", 4096, 4096}, {"14336x4096", 14336, 4096}};
  for (const Shape& s : shapes) {
    at::Tensor weight = (at::randn({s.out, s.in}) * 0.02).to(at::kBFloat16);
    for (bool double_quantize : {false, true})
      for (int n : threads) {
        at::set_num_threads(n);
        const double seconds = best_seconds(weight, double_quantize);
        std::printf("quantize_4bit nf4%s bf16 %-10s threads %d: %.4f s, %.1f M elements/s\n",
                    double_quantize ? " double" : "", s.name, n, seconds, weight.numel() / seconds / 1e6);
      }
  }
  std::printf("fingerprint %016llx\n", static_cast<unsigned long long>(fingerprint()));
  return 0;
}
