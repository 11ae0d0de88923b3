// Kernel figures on a GPU (tools/bench_gpu.sh runs this, then the end-to-end comparison with PEFT):
//  - GEMV (token generation, m = 1 / 4 / 8 rows), both kernels (tensor cores at their defaults, launched
//    overlapping the GEMV before, at each pipeline depth and block size; CUDA cores):
//    GB/s of the bytes it must read (packed weight, absmax, x) and write (y), against the card's peak bandwidth
//    and against a measured device-to-device copy. Timed in a CUDA graph (no CPU launch cost), over copies of the
//    weight that together exceed the L2 cache 4x, so that every call reads its weight from memory; and a whole
//    layer's seven GEMVs back to back, plainly and overlapping (bench_gemv_layer);
//  - NF4 dequantization to bf16 (the first half of every training matmul; bench_gpu_peer.py dequantize times
//    bitsandbytes' on the same shapes);
//  - the training-shape NF4 matmul (forward x W^T and backward dy W, m = 2048 / 4096 / 8192 tokens), both the
//    sliced dequantize-then-cuBLAS one and the fused tensor-core kernel, against cuBLAS's fp16 GEMM of the same
//    shape on a dense weight (through libtorch, as the sliced matmul itself uses);
//  - fused q/k/v LoRA (forward + backward) against three separate LoRA layers;
//  - the fused RMSNorm, SwiGLU and rotary ops (forward + backward) against the composites they replace.
// Llama-3-8B's projection shapes. Each other figure is the median of 7 timings of 20 calls after 3 warm-up calls
// (each tiling of the fused matmul: 3 of 10).
//  - the fused matmul's Hopper tiling (warpgroup MMAs, sm_90a) on the same cases, last (bench_wgmma).
// Prints a Markdown table and one JSON line per figure. `bench_gpu [gemv] [dequantize] [matmul] [lora] [ops]
// [wgmma]` runs only those sections (all of them by default). BENCH_GPU_GEMV_ONLY=gate/up (a shape's name up to its
// first space) and BENCH_GPU_GEMV_ROWS=1 limit the GEMV section to that shape and m, as for a profiler
// (tools/gpu-check.sh's ncu stage).
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autotrain/cuda_backend.h"
#include "autotrain/cuda_kernels.h"
#include "autotrain/cuda_ops.h"
#include "autotrain/lora.h"
#include "autotrain/model.h"
#include "autotrain/quant.h"

using namespace autotrain;

namespace {

// Seconds per call of `work`: the median of `timings` timings of `calls` calls, after 3 warm-up calls. With
// `enqueue_seconds`, also the median time the CPU took to enqueue a call (before the synchronisation): when it is
// close to the whole, the figure is the CPU's launch path, not the GPU's work.
double time_per_call(const std::function<void()>& work, int timings = 7, int calls = 20,
                     double* enqueue_seconds = nullptr) {
  for (int i = 0; i < 3; ++i) work();
  torch::cuda::synchronize();
  std::vector<double> samples, enqueued;
  for (int s = 0; s < timings; ++s) {
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) work();
    enqueued.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls);
    torch::cuda::synchronize();
    samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / calls);
  }
  std::sort(samples.begin(), samples.end());
  std::sort(enqueued.begin(), enqueued.end());
  if (enqueue_seconds != nullptr) *enqueue_seconds = enqueued[enqueued.size() / 2];
  return samples[samples.size() / 2];
}

struct ProjectionShape {
  const char* name;
  int64_t out, in;
};
const std::vector<ProjectionShape> kShapes{
    {"q/o 4096x4096", 4096, 4096}, {"k/v 1024x4096", 1024, 4096}, {"gate/up 14336x4096", 14336, 4096},
    {"down 4096x14336", 4096, 14336}};

// A random (out, in) weight quantized to NF4 (blocksize 64) on the CPU by the reference quantizer.
Quantized4bit random_nf4(int64_t out, int64_t in, bool double_quantize) {
  return quantize_4bit(at::randn({out, in}) * 0.02, QuantType::nf4, 64, double_quantize);
}

Quantized4bit random_nf4_on_gpu(int64_t out, int64_t in) { return random_nf4(out, in, true).to(at::kCUDA); }

// Seconds per call of `launch` (a kernel launcher that returns nullptr, or its error) timed in a CUDA graph;
// -1 after an error, which goes to stderr.
double graph_seconds_per_call(const std::function<const char*(void* stream)>& launch, int calls) {
  std::string error;
  const double seconds = cuda::seconds_per_call_in_graph(
      [&](void* stream) {
        if (const char* problem = launch(stream)) error = problem;
      },
      calls, &error);
  if (error.empty()) return seconds;
  std::fprintf(stderr, "bench_gpu: %s\n", error.c_str());
  return -1.0;
}

void json(const std::string& kind, const std::string& shape, const std::string& fields) {
  std::printf("JSON {\"bench\":\"%s\",\"shape\":\"%s\",%s}\n", kind.c_str(), shape.c_str(), fields.c_str());
}

// Each fused decoder-layer op against its composite at 4096 tokens of Llama-3-8B (hidden 4096, intermediate
// 14336, 32 query heads of 128), bf16: the forward and the input gradients (autograd::grad, nothing accumulated).
void bench_fused_layer_ops() {
  std::printf("\n## Fused decoder-layer ops vs their composites (bf16, 4096 tokens, forward + backward)\n\n");
  std::printf("| op | fused us | composite us | speed-up |\n|---|---|---|---|\n");
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  const int64_t tokens = 4096;
  at::Tensor hidden = at::randn({1, tokens, 4096}, bf16).requires_grad_(true), weight = at::ones({4096}, bf16);
  at::Tensor gate = at::randn({1, tokens, 14336}, bf16).requires_grad_(true);
  at::Tensor up = at::randn({1, tokens, 14336}, bf16).requires_grad_(true);
  at::Tensor q = at::randn({1, tokens, 32, 128}, bf16).transpose(1, 2).requires_grad_(true);
  at::Tensor angles = at::randn({1, 1, tokens, 128}, bf16), cos = angles.cos(), sin = angles.sin();
  struct Case {
    const char* name;
    std::function<at::Tensor()> fused, composite;
    std::vector<at::Tensor> inputs;
  };
  const std::vector<Case> cases{
      {"rms_norm 4096", [&] { return rms_norm_cuda(hidden, weight, 1e-5); },
       [&] { return rms_norm_composite(hidden, weight, 1e-5); }, {hidden}},
      {"swiglu 14336", [&] { return swiglu_cuda(gate, up); }, [&] { return swiglu_composite(gate, up); },
       {gate, up}},
      {"rotary q 32x128", [&] { return rotary_cuda(q, cos, sin); },
       [&] { return apply_rotary_composite(q, cos, sin); }, {q}}};
  for (const Case& c : cases) {
    const at::Tensor upstream = at::randn_like(c.fused());
    auto pass = [&](const std::function<at::Tensor()>& op) {
      return time_per_call([&] { torch::autograd::grad({op()}, c.inputs, {upstream}); });
    };
    const double fused = pass(c.fused), composite = pass(c.composite);
    std::printf("| %s | %.1f | %.1f | %.2fx |\n", c.name, fused * 1e6, composite * 1e6, composite / fused);
    json("fused_layer_op", c.name,
         "\"fused_us\":" + std::to_string(fused * 1e6) + ",\"composite_us\":" + std::to_string(composite * 1e6));
  }
}

// A copy of the GPU weight `q` in the gemv_tiles layout (tile_4bit_for_gemv_cuda, as generation makes it), kept
// alive in `keep`, as the kernels' view.
cuda::FourBitWeight tiled_view(const Quantized4bit& q, std::vector<Quantized4bit>& keep) {
  keep.push_back(q);
  if (!tile_4bit_for_gemv_cuda(keep.back(), at::kBFloat16)) {
    std::fprintf(stderr, "bench_gpu: the tensor-core GEMV cannot take a %ld x %ld weight in the gemv_tiles layout\n",
                 static_cast<long>(q.shape.at(0)), static_cast<long>(q.shape.at(1)));
    std::exit(1);
  }
  return four_bit_kernel_view(keep.back());
}

struct Device {
  cuda::DeviceInfo info;
  double copy_gbs = 0;  // a measured device-to-device copy (1 GiB read + 1 GiB written)
};

// A decoder layer's seven GEMVs back to back, as one generation step runs them (Llama-3-8B: q, k, v, o, gate, up,
// down; one row of x, bf16, the kernels' defaults), over copies of the layer that together exceed the L2 cache 4x:
// the whole layer's bytes against the time of the seven, plainly launched and launched overlapping one another
// (set_gemv_overlap), and with q, k and v in one launch and gate and up in another (gemv_4bit_group; overlapping).
// The per-projection figures above leave out what one GEMV's start and end cost the next.
void bench_gemv_layer(const Device& d) {
  const cuda::DeviceInfo& device = d.info;
  const std::vector<std::pair<int64_t, int64_t>> shapes{{4096, 4096},  {1024, 4096},  {1024, 4096}, {4096, 4096},
                                                        {14336, 4096}, {14336, 4096}, {4096, 14336}};
  std::vector<Quantized4bit> cpu_weights;
  double layer_bytes = 0;
  for (const auto& [out, in] : shapes) {
    cpu_weights.push_back(random_nf4(out, in, /*double_quantize=*/true));
    const Quantized4bit& q = cpu_weights.back();
    layer_bytes += q.packed.nbytes() + q.nested.codes.nbytes() + q.nested.absmax.nbytes() + 2.0 * (in + out);
  }
  const int layers = static_cast<int>(std::max(2.0, std::ceil(4.0 * device.l2_cache_bytes / layer_bytes)));
  std::vector<Quantized4bit> kept;
  std::vector<cuda::FourBitWeight> views, tiled_views;  // [layer][projection]
  std::vector<Quantized4bit> tiled_kept;
  for (int l = 0; l < layers; ++l)
    for (const Quantized4bit& q : cpu_weights) {
      kept.push_back(q.to(at::kCUDA));
      views.push_back(four_bit_kernel_view(kept.back()));
      tiled_views.push_back(tiled_view(kept.back(), tiled_kept));
    }
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  at::Tensor x = at::randn({1, 4096}, bf16), x_down = at::randn({1, 14336}, bf16);
  std::vector<at::Tensor> ys;  // one per weight of a group
  for (int i = 0; i < cuda::kMaxGemvGroup; ++i) ys.push_back(at::empty({1, 14336}, bf16));
  void* y_pointers[] = {ys[0].data_ptr(), ys[1].data_ptr(), ys[2].data_ptr()};
  at::Tensor& y = ys[0];
  auto layer_seconds = [&](bool overlap, bool grouped, const std::vector<cuda::FourBitWeight>& weights) {
    cuda::set_gemv_overlap(overlap);
    int next = 0;
    const double seconds = graph_seconds_per_call(
        [&](void* stream) -> const char* {
          const int layer = next++ % layers;
          if (grouped) {  // q, k, v | o | gate, up | down
            const cuda::FourBitWeight* w = &weights[layer * shapes.size()];
            const cuda::DynamicMap* map = kernel_dynamic_map();
            auto group = [&](int first, int count, const at::Tensor& input) {
              return cuda::gemv_4bit_group(w + first, count, map, input.data_ptr(), 1, y_pointers, cuda::DType::bf16,
                                           stream);
            };
            const char* problem = group(0, 3, x);
            if (problem == nullptr) problem = group(3, 1, x);
            if (problem == nullptr) problem = group(4, 2, x);
            if (problem == nullptr) problem = group(6, 1, x_down);
            return problem;
          }
          for (size_t p = 0; p < shapes.size(); ++p) {
            const void* input = shapes[p].second == 4096 ? x.data_ptr() : x_down.data_ptr();
            if (const char* problem =
                    cuda::gemv_4bit(weights[layer * shapes.size() + p], kernel_dynamic_map(), input, 1, y.data_ptr(),
                                    cuda::DType::bf16, stream, cuda::GemvKernel::automatic))
              return problem;
          }
          return nullptr;
        },
        4 * layers);
    cuda::set_gemv_overlap(true);  // the default
    return seconds;
  };
  // Each way of launching the layer: a row of the table, and <key>us and <key>peak_fraction in the JSON line.
  struct Way {
    const char* name;
    const char* key;
    bool overlap, grouped;
    const std::vector<cuda::FourBitWeight>* weights;
    int warps;  // set_gemv_block_warps; blocks of 16 warps: shorter tails (see bench_gemv)
  };
  const int w16 = cuda::kMaxGemvBlockWarps;
  const std::vector<Way> ways{
      {"one after another (set_gemv_overlap(false))", "", false, false, &views, 0},
      {"overlapping, rows layout", "overlapped_", true, false, &views, 0},
      {"overlapping, q/k/v and gate/up one launch each (gemv_4bit_group)", "grouped_", true, true, &views, 0},
      {"overlapping, gemv_tiles layout (tile_4bit_for_gemv)", "tiles_", true, false, &tiled_views, 0},
      {"overlapping, gemv_tiles layout, grouped (generation's default)", "grouped_tiles_", true, true, &tiled_views, 0},
      {"overlapping, gemv_tiles layout, blocks of 16 warps", "tiles_w16_", true, false, &tiled_views, w16},
      {"overlapping, gemv_tiles layout, grouped, blocks of 16 warps", "grouped_tiles_w16_", true, true, &tiled_views,
       w16}};
  std::printf("\n### A layer's seven GEMVs back to back (Llama-3-8B, one row of x, bf16, defaults; %.0f MB)\n\n"
              "| launched | us per layer | GB/s | %% of peak |\n|---|---|---|---|\n",
              layer_bytes / 1e6);
  std::string fields = "\"m\":1,\"bytes\":" + std::to_string(layer_bytes);
  for (const Way& way : ways) {
    cuda::set_gemv_block_warps(way.warps);
    const double seconds = layer_seconds(way.overlap, way.grouped, *way.weights);
    cuda::set_gemv_block_warps(0);
    const double gbs = layer_bytes / seconds / 1e9, peak_fraction = gbs / device.peak_bandwidth_gbs;
    std::printf("| %s | %.1f | %.0f | %.0f%% |\n", way.name, seconds * 1e6, gbs, 100 * peak_fraction);
    fields += std::string(",\"") + way.key + "us\":" + std::to_string(seconds * 1e6) + ",\"" + way.key +
              "peak_fraction\":" + std::to_string(peak_fraction);
  }
  std::printf("\n");
  json("gemv_layer", "llama-3-8b", fields + ",\"layer_copies\":" + std::to_string(layers));
}

void bench_gemv(const Device& d) {
  const cuda::DeviceInfo& device = d.info;
  const double copy_gbs = d.copy_gbs;
  std::printf("## NF4 GEMV (double-quantized absmax, bf16; weights read from memory, not L2)\n\n"
              "tensor cores at their defaults (depth %d, blocks of 8 or 16 warps by the weight's rows; GB/s and %% "
              "of peak of these) but one call at a time, the same launched overlapping the GEMV before it as by "
              "default (programmatic dependent launch, sm_90+; set_gemv_overlap), then at each pipeline depth "
              "(steps a warp has under way at once) with blocks of at most 16, 8 and 4 warps; CUDA cores\n\n",
              cuda::kDefaultGemvDepth);
  std::string depths;
  for (int depth = 1; depth <= cuda::kMaxGemvDepth; ++depth) {
    if (depth > 1) depths += " / ";
    depths += std::to_string(depth);
  }
  std::printf("| shape | m | tensor-core us | GB/s | %% of peak | %% of copy | overlapping us (%% of peak) "
              "| gemv_tiles layout, overlapping: us at depth %s (%% of peak at depth %d); 16 warps: %s "
              "| us at depth %s; 8 warps: %s; 4 warps: %s | CUDA-core us | %% of peak | dequantize + cuBLAS us |\n",
              depths.c_str(), cuda::kDefaultGemvDepth, depths.c_str(), depths.c_str(), depths.c_str(), depths.c_str());
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const char* only = std::getenv("BENCH_GPU_GEMV_ONLY");
  const char* rows = std::getenv("BENCH_GPU_GEMV_ROWS");
  // Each call timed on its own, then launched overlapping the one before (the default, where it applies).
  cuda::set_gemv_overlap(false);
  // BENCH_GPU_GEMV_SWEEP=0 leaves out the depths and block sizes, so that the defaults' calls come first (the
  // ncu stage of tools/gpu-check.sh profiles one of them).
  const char* sweep_setting = std::getenv("BENCH_GPU_GEMV_SWEEP");
  const bool sweep = sweep_setting == nullptr || std::string(sweep_setting) != "0";
  for (const auto& s : kShapes) {
    if (only != nullptr && std::strncmp(s.name, only, std::strlen(only)) != 0) continue;
    // Copies of one weight, more bytes in all than 4x the L2 cache, taken in turn: each call reads from memory
    // as it does in generation, where a model's layers are far larger than the cache.
    const Quantized4bit cpu_weight = random_nf4(s.out, s.in, /*double_quantize=*/true);
    const Quantized4bit q = cpu_weight.to(at::kCUDA);
    const double weight_bytes = q.packed.nbytes() + q.nested.codes.nbytes() + q.nested.absmax.nbytes();
    const int copies = static_cast<int>(std::max(2.0, std::ceil(4.0 * device.l2_cache_bytes / weight_bytes)));
    std::vector<Quantized4bit> kept;
    std::vector<cuda::FourBitWeight> views, tiled_views;
    std::vector<Quantized4bit> tiled_kept;
    for (int i = 0; i < copies; ++i) {
      kept.push_back(cpu_weight.to(at::kCUDA));
      views.push_back(four_bit_kernel_view(kept.back()));
      tiled_views.push_back(tiled_view(kept.back(), tiled_kept));
    }
    const int calls = copies * static_cast<int>(std::ceil(40.0 / copies));
    for (int64_t m : {1, 4, 8}) {
      if (rows != nullptr && std::atoi(rows) != m) continue;
      at::Tensor x = at::randn({m, s.in}, at::TensorOptions(at::kBFloat16).device(at::kCUDA));
      at::Tensor y = at::empty({m, s.out}, x.options());
      auto kernel_seconds = [&](cuda::GemvKernel kernel, const std::vector<cuda::FourBitWeight>& weights) {
        int next = 0;
        return graph_seconds_per_call(
            [&](void* stream) {
              return cuda::gemv_4bit(weights[next++ % copies], kernel_dynamic_map(), x.data_ptr(), m, y.data_ptr(),
                                     cuda::DType::bf16, stream, kernel);
            },
            calls);
      };
      std::vector<double> per_depth;
      std::string depth_fields, depth_cells;
      for (int warps : {cuda::kMaxGemvBlockWarps, 8, 4})
        for (int depth = 1; depth <= cuda::kMaxGemvDepth && sweep; ++depth) {
          cuda::set_gemv_block_warps(warps);
          cuda::set_gemv_pipeline_depth(depth);
          per_depth.push_back(kernel_seconds(cuda::GemvKernel::tensor_cores, views));
          const double us = per_depth.back() * 1e6;
          char text[64];
          std::snprintf(text, sizeof text, ",\"w%d_depth%d_us\":%f", warps, depth, us);
          depth_fields += text;
          const char* separator = depth > 1 ? " / " : warps == cuda::kMaxGemvBlockWarps ? "" : "; ";
          std::snprintf(text, sizeof text, "%s%.1f", separator, us);
          depth_cells += text;
        }
      cuda::set_gemv_block_warps(0);
      cuda::set_gemv_pipeline_depth(0);
      const double tensor_cores = kernel_seconds(cuda::GemvKernel::tensor_cores, views);  // defaults, one at a time
      const double fastest = sweep ? *std::min_element(per_depth.begin(), per_depth.end()) : tensor_cores;
      cuda::set_gemv_overlap(true);  // and launched overlapping the GEMV before it (sm_90+; the default)
      const double overlapped = kernel_seconds(cuda::GemvKernel::tensor_cores, views);
      // The gemv_tiles layout (generation's), overlapping, at each depth, with the automatic blocks (8 warps
      // where the weight has a tile per SM or more) and with blocks of 16 warps: a tile of 4096 columns is then one
      // round of its block's warps instead of two, so whole tiles leave a shorter tail (gate / up: 896 tiles over
      // 132 blocks, 7 rounds for 6.8 tiles' work, instead of 4 tiles' time for 3.4 over 264 blocks).
      std::string tiles_cells[2], tiles_fields;  // automatic blocks, 16 warps
      double tiles_default = 0;
      for (int warps : {0, cuda::kMaxGemvBlockWarps}) {
        cuda::set_gemv_block_warps(warps);
        for (int depth = 1; depth <= cuda::kMaxGemvDepth; ++depth) {
          cuda::set_gemv_pipeline_depth(depth);
          const double seconds = kernel_seconds(cuda::GemvKernel::tensor_cores, tiled_views);
          if (depth == cuda::kDefaultGemvDepth && warps == 0) tiles_default = seconds;
          char text[64];
          std::snprintf(text, sizeof text, "%s%.1f", depth > 1 ? " / " : "", seconds * 1e6);
          tiles_cells[warps == 0 ? 0 : 1] += text;
          std::snprintf(text, sizeof text, ",\"tiles_%sdepth%d_us\":%f", warps == 0 ? "" : "w16_", depth,
                        seconds * 1e6);
          tiles_fields += text;
        }
      }
      cuda::set_gemv_block_warps(0);
      cuda::set_gemv_pipeline_depth(0);  // the automatic depth (3 where a tiled weight has 4 tiles an SM, else 2)
      const double tiles_automatic = kernel_seconds(cuda::GemvKernel::tensor_cores, tiled_views);
      tiles_fields += ",\"tiles_automatic_us\":" + std::to_string(tiles_automatic * 1e6);
      cuda::set_gemv_overlap(false);
      const double cuda_cores = kernel_seconds(cuda::GemvKernel::cuda_cores, views);
      const double bytes = weight_bytes + x.nbytes() + y.nbytes();
      const double baseline = time_per_call([&] { at::mm(x, dequantize_4bit_cuda(q, at::kBFloat16).t()); });
      const double gbs = bytes / tensor_cores / 1e9, cuda_core_gbs = bytes / cuda_cores / 1e9;
      const double overlapped_gbs = bytes / overlapped / 1e9;
      std::printf("| %s | %ld | %.1f | %.0f | %.0f%% | %.0f%% | %.1f (%.0f%%) | %s (%.0f%%); 16 warps: %s | %s | %.1f "
                  "| %.0f%% | %.1f |\n",
                  s.name, static_cast<long>(m), tensor_cores * 1e6, gbs, 100 * gbs / device.peak_bandwidth_gbs,
                  100 * gbs / copy_gbs, overlapped * 1e6, 100 * overlapped_gbs / device.peak_bandwidth_gbs,
                  tiles_cells[0].c_str(), 100 * bytes / tiles_default / 1e9 / device.peak_bandwidth_gbs,
                  tiles_cells[1].c_str(), depth_cells.c_str(), cuda_cores * 1e6,
                  100 * cuda_core_gbs / device.peak_bandwidth_gbs, baseline * 1e6);
      json("gemv", s.name,
           "\"m\":" + std::to_string(m) + ",\"us\":" + std::to_string(tensor_cores * 1e6) +
               ",\"fastest_us\":" + std::to_string(fastest * 1e6) +
               ",\"overlapped_us\":" + std::to_string(overlapped * 1e6) + depth_fields + tiles_fields +
               ",\"gbs\":" + std::to_string(gbs) + ",\"peak_fraction\":" +
               std::to_string(gbs / device.peak_bandwidth_gbs) + ",\"copy_fraction\":" +
               std::to_string(gbs / copy_gbs) + ",\"cuda_core_us\":" + std::to_string(cuda_cores * 1e6) +
               ",\"cuda_core_peak_fraction\":" + std::to_string(cuda_core_gbs / device.peak_bandwidth_gbs) +
               ",\"dequant_mm_us\":" + std::to_string(baseline * 1e6) + ",\"weight_copies\":" +
               std::to_string(copies));
    }
  }
  cuda::set_gemv_overlap(true);
  if (only == nullptr) bench_gemv_layer(d);
}

void bench_dequantize(const Device& d) {
  const cuda::DeviceInfo& device = d.info;
  std::printf("## NF4 dequantization to bf16 (blocksize 64, absmax not double-quantized: AutoTrain's int4)\n\n");
  std::printf("| shape | us | GB/s (read + written) | %% of peak |\n|---|---|---|---|\n");
  for (const auto& s : kShapes) {
    const Quantized4bit q = random_nf4(s.out, s.in, /*double_quantize=*/false).to(at::kCUDA);
    const cuda::FourBitWeight view = four_bit_kernel_view(q);
    at::Tensor out = at::empty({s.out, s.in}, at::TensorOptions(at::kBFloat16).device(at::kCUDA));
    const double seconds = graph_seconds_per_call(
        [&](void* stream) {
          return cuda::dequantize_4bit(view, nullptr, 0, s.out, 0, s.in, out.data_ptr(), cuda::DType::bf16, stream);
        },
        20);
    const double bytes = q.packed.nbytes() + q.absmax.nbytes() + out.nbytes();
    const double gbs = bytes / seconds / 1e9;
    std::printf("| %s | %.1f | %.0f | %.0f%% |\n", s.name, seconds * 1e6, gbs, 100 * gbs / device.peak_bandwidth_gbs);
    json("dequantize", s.name, "\"us\":" + std::to_string(seconds * 1e6) + ",\"gbs\":" + std::to_string(gbs));
  }

}

// One case of the training matmul's figures: a Llama-3-8B projection shape, a token count, a dtype and a pass,
// with the shape's random NF4 weight, the dense weight cuBLAS multiplies instead (fp16, and in the case's dtype),
// and random inputs.
struct MatmulCase {
  const ProjectionShape& shape;
  const Quantized4bit& q;
  const at::Tensor &dense, &dense_own;
  int64_t m;
  at::ScalarType dtype;
  cuda::MatmulPass pass;
  const at::Tensor &x, &dy, &x16, &dy16;
  bool forward() const { return pass == cuda::MatmulPass::forward; }
  const at::Tensor& a() const { return forward() ? x : dy; }  // the matmul's input in this pass
  double flops() const { return 2.0 * m * shape.out * shape.in; }
  const char* pass_name() const { return forward() ? "forward x.W^T" : "backward dy.W"; }
  // The start of the case's JSON fields.
  std::string json_fields() const {
    return "\"m\":" + std::to_string(m) + ",\"dtype\":\"" + c10::toString(dtype) + "\",\"pass\":\"" + pass_name() +
           "\"";
  }
  // The sliced matmul (training's default) of this pass, slices of at most `chunk` bytes.
  at::Tensor sliced(int64_t chunk) const {
    return forward() ? matmul_4bit_cuda(x, q, chunk) : matmul_4bit_transposed_cuda(dy, q, chunk);
  }
  // cuBLAS's fp16 GEMM of the same shape on the dense weight, in TFLOP/s.
  double cublas_fp16_tflops(int timings = 7, int calls = 20) const {
    return flops() / time_per_call([&] { forward() ? at::mm(x16, dense.t()) : at::mm(dy16, dense); }, timings, calls) /
           1e12;
  }
};

// Every case of the matmul sections: 4 shapes x 2048 / 4096 / 8192 tokens x bf16 / fp16 x forward / backward.
void for_each_matmul_case(const std::function<void(const MatmulCase&)>& run) {
  for (const auto& s : kShapes) {
    const Quantized4bit q = random_nf4_on_gpu(s.out, s.in);
    const at::Tensor dense = at::randn({s.out, s.in}, at::TensorOptions(at::kHalf).device(at::kCUDA));
    const at::Tensor dense_bf16 = dense.to(at::kBFloat16);
    for (int64_t m : {2048, 4096, 8192})
      for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
        const auto options = at::TensorOptions(dtype).device(at::kCUDA);
        const at::Tensor x = at::randn({m, s.in}, options), dy = at::randn({m, s.out}, options);
        const at::Tensor x16 = x.to(at::kHalf), dy16 = dy.to(at::kHalf);
        for (cuda::MatmulPass pass : {cuda::MatmulPass::forward, cuda::MatmulPass::backward})
          run(MatmulCase{s, q, dense, dtype == at::kHalf ? dense : dense_bf16, m, dtype, pass, x, dy, x16, dy16});
      }
  }
}

// The sliced matmul, the fused kernel (its automatic tile and each tile) and cuBLAS's fp16 GEMM on a dense weight.
void bench_matmul() {
  const int64_t chunk = dequantize_chunk_bytes();
  std::printf("\n## NF4 matmul for training vs cuBLAS fp16 GEMM on a dense weight\n\n"
              "sliced: slices of at most %ld MiB dequantized, then cuBLAS (training's default; and with the "
              "dequantization launched overlapping the GEMM before it, set_dequantize_overlap); fused: tensor cores "
              "on tiles dequantized into shared memory (AUTOTRAIN_NF4_MATMUL=fused), its automatic tile and the "
              "fastest of its tiles\n\n",
              static_cast<long>(chunk >> 20));
  std::printf("| shape | tokens | dtype | pass | sliced TFLOP/s | fused TFLOP/s | fastest tile TFLOP/s | cuBLAS fp16 "
              "TFLOP/s | sliced ratio | fused ratio | fastest tile ratio | sliced: CPU enqueue / whole us "
              "| dequantize us | cuBLAS in dtype TFLOP/s | sliced, dequantization overlapping: us, ratio |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const std::vector<std::pair<cuda::MatmulTile, const char*>> tiles{{cuda::MatmulTile::m256n128, "256x128"},
                                                                    {cuda::MatmulTile::m128n256, "128x256"},
                                                                    {cuda::MatmulTile::m128n128, "128x128"},
                                                                    {cuda::MatmulTile::m64n128, "64x128"},
                                                                    {cuda::MatmulTile::m64n64, "64x64"}};
  for_each_matmul_case([&](const MatmulCase& c) {
    const double flops = c.flops();
    auto tflops = [&](const std::function<void()>& work) { return flops / time_per_call(work) / 1e12; };
    // The sliced matmul's parts: the CPU's time to enqueue a call against the whole, the dequantization alone, and
    // cuBLAS in the input's own dtype on a dense weight (its ceiling).
    auto sliced_call = [&] { c.sliced(chunk); };
    double enqueue = 0;
    const double sliced_seconds = time_per_call(sliced_call, 7, 20, &enqueue);
    const double sliced = flops / sliced_seconds / 1e12;
    cuda::set_dequantize_overlap(true);  // its dequantization launched overlapping the GEMM before (sm_90+)
    const double overlapped_seconds = time_per_call(sliced_call, 7, 20);
    cuda::set_dequantize_overlap(false);
    const double overlapped = flops / overlapped_seconds / 1e12;
    const double dequantize = time_per_call([&] { dequantize_4bit_cuda(c.q, c.dtype); });
    const double cublas_own =
        tflops([&] { c.forward() ? at::mm(c.x, c.dense_own.t()) : at::mm(c.dy, c.dense_own); });
    const double fused = tflops([&] { matmul_4bit_fused_cuda(c.a(), c.q, c.pass); });
    const double cublas = c.cublas_fp16_tflops();
    std::string per_tile;
    double fastest = 0;
    const char* fastest_name = "";
    for (const auto& [tile, name] : tiles) {  // a lighter timing: 5 tilings x 48 cases
      const double figure =
          flops / time_per_call([&] { matmul_4bit_fused_cuda(c.a(), c.q, c.pass, tile); }, 3, 10) / 1e12;
      per_tile += std::string(",\"tile_") + name + "_tflops\":" + std::to_string(figure);
      if (figure > fastest) fastest = figure, fastest_name = name;
    }
    std::printf("| %s | %ld | %s | %s | %.0f | %.0f | %.0f (%s) | %.0f | %.2f | %.2f | %.2f | %.0f / %.0f | %.0f "
                "| %.0f | %.0f, %.2f |\n",
                c.shape.name, static_cast<long>(c.m), c10::toString(c.dtype), c.pass_name(), sliced, fused, fastest,
                fastest_name, cublas, sliced / cublas, fused / cublas, fastest / cublas, enqueue * 1e6,
                sliced_seconds * 1e6, dequantize * 1e6, cublas_own, overlapped_seconds * 1e6, overlapped / cublas);
    json("matmul", c.shape.name,
         c.json_fields() + ",\"tflops\":" + std::to_string(sliced) + ",\"fused_tflops\":" + std::to_string(fused) +
             ",\"cublas_fp16_tflops\":" + std::to_string(cublas) + ",\"ratio\":" + std::to_string(sliced / cublas) +
             ",\"fused_ratio\":" + std::to_string(fused / cublas) + ",\"sliced_enqueue_us\":" +
             std::to_string(enqueue * 1e6) + ",\"sliced_us\":" + std::to_string(sliced_seconds * 1e6) +
             ",\"dequantize_us\":" + std::to_string(dequantize * 1e6) + ",\"cublas_same_dtype_tflops\":" +
             std::to_string(cublas_own) + ",\"overlapped_us\":" + std::to_string(overlapped_seconds * 1e6) +
             ",\"overlapped_ratio\":" + std::to_string(overlapped / cublas) + per_tile);
  });
}

// The Hopper tilings of the fused matmul (128 x 128, 128 x 64 and 128 x 128 with k split in two, sm_90a) on the
// matmul section's cases, against cuBLAS's fp16 GEMM on a dense weight and against the sliced matmul (training's
// default), and which one automatic_wgmma takes. Each case first checks each tiling's result against the sliced
// matmul's (the largest difference, relative to the largest value; they sum in different orders), so that a wrong
// kernel is not timed as a fast one. A section of its own, run last: a kernel that faults spoils the CUDA context
// for whatever runs after it in the process.
void bench_wgmma() {
  std::fflush(stdout);  // what the sections before printed survives a fault here
  std::printf("\n## NF4 matmul for training, Hopper tilings (warpgroup MMAs) vs cuBLAS fp16\n\n");
  if (!cuda::matmul_4bit_wgmma_available()) {
    std::printf("not run: not an sm_90 GPU, or no sm_90a code in this build\n");
    return;
  }
  struct Tiling {
    const char* name;  // in the table and the JSON keys (tflops_<name>, ratio_<name>)
    cuda::MatmulTile tile;
  };
  const std::vector<Tiling> tilings{{"128", cuda::MatmulTile::m128n128_wgmma},
                                    {"64", cuda::MatmulTile::m128n64_wgmma},
                                    {"split_k", cuda::MatmulTile::m128n128_split_k_wgmma}};
  const int64_t chunk = dequantize_chunk_bytes();
  std::printf("| shape | tokens | dtype | pass | 128x128 TFLOP/s | 128x64 TFLOP/s | split k TFLOP/s "
              "| cuBLAS fp16 TFLOP/s | 128x128 ratio | 128x64 ratio | split k ratio | automatic picks | sliced ratio "
              "| largest difference from the sliced matmul, relative |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for_each_matmul_case([&](const MatmulCase& c) {
    auto wgmma = [&](cuda::MatmulTile tile) { return matmul_4bit_fused_cuda(c.a(), c.q, c.pass, tile); };
    const at::Tensor reference = c.sliced(chunk).to(at::kFloat);
    const cuda::MatmulTile automatic = cuda::matmul_4bit_wgmma_tile(four_bit_kernel_view(c.q), c.m, c.pass);
    double largest_difference = 0;
    std::string picks = "?", fields;
    std::vector<double> tflops, ratios;
    const double cublas = c.cublas_fp16_tflops(3, 10);
    for (const Tiling& t : tilings) {
      const at::Tensor result = wgmma(t.tile);
      largest_difference = std::max(
          largest_difference, ((result.to(at::kFloat) - reference).abs().max() / reference.abs().max()).item<double>());
      if (t.tile == automatic) picks = t.name;
      // A lighter timing, as for each tiling in the matmul section.
      tflops.push_back(c.flops() / time_per_call([&] { wgmma(t.tile); }, 3, 10) / 1e12);
      ratios.push_back(tflops.back() / cublas);
      fields += std::string(",\"tflops_") + t.name + "\":" + std::to_string(tflops.back()) + ",\"ratio_" + t.name +
                "\":" + std::to_string(ratios.back());
    }
    const double sliced_ratio = c.flops() / time_per_call([&] { c.sliced(chunk); }, 3, 10) / 1e12 / cublas;
    std::printf("| %s | %ld | %s | %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %s | %.2f | %.1e |\n",
                c.shape.name, static_cast<long>(c.m), c10::toString(c.dtype), c.pass_name(), tflops[0], tflops[1],
                tflops[2], cublas, ratios[0], ratios[1], ratios[2], picks.c_str(), sliced_ratio, largest_difference);
    json("wgmma", c.shape.name,
         c.json_fields() + fields + ",\"cublas_fp16_tflops\":" + std::to_string(cublas) + ",\"automatic\":\"" + picks +
             "\",\"sliced_ratio\":" + std::to_string(sliced_ratio) +
             ",\"relative_difference\":" + std::to_string(largest_difference));
    std::fflush(stdout);
  });
}

void bench_fused_lora() {
  std::printf("\n## Fused q/k/v LoRA (r = 16, bf16 base outputs, forward + backward) vs three LoRA layers\n\n");
  std::printf("| tokens | fused us | separate us | speed-up |\n|---|---|---|---|\n");
  for (int64_t m : {2048, 8192}) {
    const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
    const auto f32 = at::TensorOptions(at::kFloat).device(at::kCUDA);
    const std::vector<int64_t> outs{4096, 1024, 1024};
    at::Tensor x = at::randn({m, 4096}, bf16).requires_grad_(true);
    std::vector<at::Tensor> as, bs, bases;
    for (int64_t out : outs) {
      as.push_back((at::randn({16, 4096}, f32) * 0.01).requires_grad_(true));
      bs.push_back((at::randn({out, 16}, f32) * 0.01).requires_grad_(true));
      bases.push_back(at::randn({m, out}, bf16));
    }
    const double scaling = 2.0;
    auto fused = [&] {
      std::vector<at::Tensor> outputs = fused_lora(x, bases, as, bs, {scaling, scaling, scaling});
      at::Tensor total = outputs[0].sum() + outputs[1].sum() + outputs[2].sum();
      total.backward();
    };
    auto separate = [&] {
      at::Tensor total;
      for (size_t i = 0; i < 3; ++i) {
        at::Tensor update = at::linear(at::linear(x.to(at::kFloat), as[i]), bs[i]) * scaling;
        at::Tensor out = (bases[i] + update.to(at::kBFloat16)).sum();
        total = total.defined() ? total + out : out;
      }
      total.backward();
    };
    const double t_fused = time_per_call(fused), t_separate = time_per_call(separate);
    std::printf("| %ld | %.0f | %.0f | %.2fx |\n", static_cast<long>(m), t_fused * 1e6, t_separate * 1e6, t_separate / t_fused);
    json("fused_lora", "q 4096, k/v 1024, in 4096, r 16",
         "\"m\":" + std::to_string(m) + ",\"fused_us\":" + std::to_string(t_fused * 1e6) +
             ",\"separate_us\":" + std::to_string(t_separate * 1e6));
  }
}

}  // namespace

// Sections to run: the arguments (gemv, dequantize, matmul, lora, ops, wgmma), or all of them; wgmma last.
int main(int argc, char** argv) {
  const std::vector<std::string> all{"gemv", "dequantize", "matmul", "lora", "ops", "wgmma"};
  std::vector<std::string> sections(argv + 1, argv + argc);
  for (const std::string& section : sections)
    if (std::find(all.begin(), all.end(), section) == all.end()) {
      std::fprintf(stderr, "bench_gpu: unknown section %s (gemv, dequantize, matmul, lora, ops, wgmma)\n",
                   section.c_str());
      return 2;
    }
  if (sections.empty()) sections = all;
  auto wanted = [&](const char* section) {
    return std::find(sections.begin(), sections.end(), section) != sections.end();
  };
  ensure_cuda_backend();
  if (!torch::cuda::is_available()) {
    std::fprintf(stderr, "bench_gpu: no CUDA device\n");
    return 1;
  }
  torch::manual_seed(0);
  Device device{cuda::device_info(0)};
  at::Tensor a = at::empty({1LL << 28}, at::TensorOptions(at::kFloat).device(at::kCUDA)), b = at::empty_like(a);
  device.copy_gbs = 2.0 * a.nbytes() / time_per_call([&] { b.copy_(a); }) / 1e9;
  a = b = at::Tensor();
  std::printf(
      "device: %s, %d SMs, peak memory bandwidth %.0f GB/s (from its clocks), device-to-device copy %.0f GB/s\n\n",
      device.info.name.c_str(), device.info.multiprocessors, device.info.peak_bandwidth_gbs, device.copy_gbs);
  if (wanted("gemv")) bench_gemv(device);
  if (wanted("dequantize")) bench_dequantize(device);
  if (wanted("matmul")) bench_matmul();
  if (wanted("lora")) bench_fused_lora();
  if (wanted("ops")) bench_fused_layer_ops();
  if (wanted("wgmma")) bench_wgmma();
  return 0;
}
