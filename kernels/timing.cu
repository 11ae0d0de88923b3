// Kernel timing for tools/bench_gpu: calls captured in a CUDA graph, so that the figure is the GPU's time and
// not the CPU's cost of launching (a few microseconds per launch, as long as a small kernel's whole run).
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "autotrain/cuda_kernels.h"

namespace autotrain::cuda {

namespace {

// Owns the stream, graph and events of one timing; frees whatever was made.
struct GraphTiming {
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  ~GraphTiming() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

bool failed(cudaError_t status, const char* step, std::string* error) {
  if (status == cudaSuccess) return false;
  if (error != nullptr) *error = std::string(step) + ": " + cudaGetErrorString(status);
  return true;
}

}  // namespace

double seconds_per_call_in_graph(const std::function<void(void* stream)>& launch, int calls, std::string* error) {
  GraphTiming t;
  if (failed(cudaStreamCreateWithFlags(&t.stream, cudaStreamNonBlocking), "cudaStreamCreate", error)) return -1;
  launch(t.stream);  // first call outside the capture: lazy set-up (device queries, module loading) happens here
  if (failed(cudaStreamSynchronize(t.stream), "warm-up call", error)) return -1;
  if (failed(cudaStreamBeginCapture(t.stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture", error))
    return -1;
  for (int i = 0; i < calls; ++i) launch(t.stream);
  if (failed(cudaStreamEndCapture(t.stream, &t.graph), "cudaStreamEndCapture", error)) return -1;
  if (failed(cudaGraphInstantiateWithFlags(&t.exec, t.graph, 0), "cudaGraphInstantiate", error)) return -1;
  if (failed(cudaEventCreate(&t.start), "cudaEventCreate", error) ||
      failed(cudaEventCreate(&t.stop), "cudaEventCreate", error))
    return -1;
  if (failed(cudaGraphLaunch(t.exec, t.stream), "cudaGraphLaunch", error) ||
      failed(cudaStreamSynchronize(t.stream), "warm-up replay", error))
    return -1;
  std::vector<float> milliseconds;
  for (int sample = 0; sample < 5; ++sample) {
    cudaEventRecord(t.start, t.stream);
    cudaGraphLaunch(t.exec, t.stream);
    cudaEventRecord(t.stop, t.stream);
    if (failed(cudaEventSynchronize(t.stop), "timed replay", error)) return -1;
    float ms = 0;
    cudaEventElapsedTime(&ms, t.start, t.stop);
    milliseconds.push_back(ms);
  }
  std::sort(milliseconds.begin(), milliseconds.end());
  return milliseconds[milliseconds.size() / 2] * 1e-3 / calls;
}

}  // namespace autotrain::cuda
