// bench_quantize [--cuda] [THREADS...]: throughput of 4-bit quantization (NF4, blocksize 64, double quantization
// off/on) of Llama-3-8B projection shapes in bf16, the dtype checkpoints are stored in; elements per second,
// best of 5.
//  - quantize_4bit on the CPU, for each thread count (default: 1 and 2);
//  - with --cuda (a build with CUDA and a GPU): quantize_4bit_torch on the first GPU, the weight already
//    there, and again with its upload from host memory (what a model load on a GPU does per weight);
//  - bench_quantize --ggml INPUT.f32 ROWS COLS IMPORTANCE.f32|- [THREADS...]: instead, the GGUF block quantizers
//    (ggml_quantize: q4_0, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs) over that float32 matrix, seconds per type, best of 3,
//    and with an importance-matrix entry of COLS float32 unless "-" (tools/bench_ggml_quants.sh runs it beside
//    ggml's own quantize_row_*_ref and quantize_<type>);
//  - a fingerprint (FNV-1a) of the bytes quantize_4bit returns for fixed inputs over NF4/FP4, double
//    quantization on/off, blocksizes 64/256, fp32/fp16/bf16 and odd sizes: run it before and after a change
//    to the quantizer, and the fingerprints must be equal.
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autotrain/cuda_backend.h"
#include "autotrain/fileio.h"
#include "autotrain/ggml_quants.h"
#include "autotrain/quant.h"

using namespace autotrain;

namespace {

// Seconds of the fastest of 5 calls of `work` (the machine is shared: the fastest is the least disturbed);
// `finish` waits for work queued on a GPU.
double best_seconds(const std::function<void()>& work, const std::function<void()>& finish = [] {}) {
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    finish();
    auto start = std::chrono::steady_clock::now();
    work();
    finish();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

void report(const char* what, const at::Tensor& weight, bool double_quantize, const std::string& where,
            double seconds) {
  std::printf("%s nf4%s bf16 %ldx%ld %s: %.4f s, %.1f M elements/s\n", what, double_quantize ? " double" : "",
              static_cast<long>(weight.size(0)), static_cast<long>(weight.size(1)), where.c_str(), seconds,
              weight.numel() / seconds / 1e6);
}

void bench_cpu(const at::Tensor& weight, const std::vector<int>& threads) {
  for (bool double_quantize : {false, true})
    for (int n : threads) {
      at::set_num_threads(n);
      const double seconds = best_seconds([&] { quantize_4bit(weight, QuantType::nf4, 64, double_quantize); });
      report("quantize_4bit", weight, double_quantize, "threads " + std::to_string(n), seconds);
    }
}

void bench_gpu(const at::Tensor& weight) {
  const at::Tensor on_gpu = weight.to(at::kCUDA);
  for (bool double_quantize : {false, true}) {
    const double seconds = best_seconds([&] { quantize_4bit_torch(on_gpu, QuantType::nf4, 64, double_quantize); },
                                        [] { torch::cuda::synchronize(); });
    report("quantize_4bit_torch", weight, double_quantize, "on cuda", seconds);
    const double with_upload = best_seconds(
        [&] { quantize_4bit_torch(weight.to(at::kCUDA), QuantType::nf4, 64, double_quantize); },
        [] { torch::cuda::synchronize(); });
    report("quantize_4bit_torch", weight, double_quantize, "on cuda, upload included", with_upload);
  }
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

// The GGUF block quantizers over a float32 matrix from a file (the one tools/bench_ggml_quants.sh gives ggml too).
// With importance_path (COLS float32, not "-"): also each type with that importance-matrix entry, as "<type>+imatrix".
int bench_ggml(const std::string& path, int64_t rows, int64_t cols, const std::string& importance_path,
               const std::vector<int>& threads) {
  const std::string bytes = read_file(path);
  if (int64_t(bytes.size()) != rows * cols * 4) {
    std::fprintf(stderr, "--ggml: %s holds %zu bytes, not %ld x %ld float32\n", path.c_str(), bytes.size(),
                 static_cast<long>(rows), static_cast<long>(cols));
    return 1;
  }
  at::Tensor x = at::empty({rows, cols}, at::kFloat);
  std::memcpy(x.data_ptr(), bytes.data(), bytes.size());
  at::Tensor importance;
  if (importance_path != "-") {
    const std::string raw = read_file(importance_path);
    if (int64_t(raw.size()) != cols * 4) {
      std::fprintf(stderr, "--ggml: %s holds %zu bytes, not %ld float32\n", importance_path.c_str(), raw.size(),
                   static_cast<long>(cols));
      return 1;
    }
    importance = at::empty({cols}, at::kFloat);
    std::memcpy(importance.data_ptr(), raw.data(), raw.size());
  }
  for (GgmlType type : {GgmlType::q4_0, GgmlType::q8_0, GgmlType::q2_K, GgmlType::q3_K, GgmlType::q4_K, GgmlType::q5_K,
                        GgmlType::q6_K, GgmlType::iq4_nl, GgmlType::iq4_xs})
    for (int n : threads) {
      at::set_num_threads(n);
      for (bool weighted : {false, true}) {
        if (weighted && (!importance.defined() || type == GgmlType::q8_0)) continue;  // q8_0 ignores the weights
        double best = 1e30;
        for (int i = 0; i < 3; ++i) {
          const auto start = std::chrono::steady_clock::now();
          ggml_quantize(x, type, weighted ? importance : at::Tensor());
          best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        std::printf("ours %s%s threads %d: %.4f s, %.1f M values/s\n", ggml_type_info(type).name,
                    weighted ? "+imatrix" : "", n, best, double(x.numel()) / best / 1e6);
      }
    }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 6 && std::string(argv[1]) == "--ggml") {
    std::vector<int> threads;
    for (int i = 6; i < argc; ++i) threads.push_back(std::atoi(argv[i]));
    if (threads.empty()) threads = {1};
    return bench_ggml(argv[2], std::atoll(argv[3]), std::atoll(argv[4]), argv[5], threads);
  }
  bool cuda = false;
  std::vector<int> threads;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--cuda") cuda = true;
    else threads.push_back(std::atoi(argv[i]));
  }
  if (threads.empty()) threads = {1, 2};
  if (cuda) {
    ensure_cuda_backend();
    if (!torch::cuda::is_available()) {
      std::fprintf(stderr, "--cuda: no CUDA device\n");
      return 1;
    }
  }
  for (int64_t rows : {4096, 14336}) {
    const at::Tensor weight = (at::randn({rows, 4096}) * 0.02).to(at::kBFloat16);
    bench_cpu(weight, threads);
    if (cuda) bench_gpu(weight);
  }
  std::printf("fingerprint %016llx\n", static_cast<unsigned long long>(fingerprint()));
  return 0;
}
