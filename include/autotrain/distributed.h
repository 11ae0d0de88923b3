// Data-parallel training on libtorch's c10d: a TCPStore rendezvous at MASTER_ADDR:MASTER_PORT and a gloo
// process group (CPU tensors; gloo also reduces CUDA tensors through the host). Workers find their place
// from torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so the
// same binary runs under torchrun, Slurm or Kubernetes; `autotrain train --nproc-per-node N` sets them for
// N local workers itself (launch_workers).
//
// Every worker holds the whole LoRA state; each runs its share of every micro-batch and the gradients are
// summed across workers (GradientReducer) before the optimizer step, so all workers take the same step.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace autotrain {

// Where this worker sits in the job.
struct WorkerPlace {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// The place from RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, or nothing when RANK and
// WORLD_SIZE are unset (a single process). Throws Error naming the variable when one is malformed.
std::optional<WorkerPlace> worker_place_from_environment();

// A connected group of workers. Collectives are blocking unless named _async; every worker must issue the
// same collectives in the same order. A worker that died or a collective that outlives `timeout` makes
// them throw Error.
class ProcessGroup {
 public:
  // Rendezvous of all world_size workers (the rank-0 worker hosts the store), then a gloo group.
  static std::unique_ptr<ProcessGroup> connect(const WorkerPlace& place, std::chrono::milliseconds timeout);
  ~ProcessGroup();

  int rank() const { return place_.rank; }
  int size() const { return place_.world_size; }
  const WorkerPlace& place() const { return place_; }

  void all_reduce_sum(at::Tensor& tensor);
  void all_reduce_max(at::Tensor& tensor);
  void broadcast(at::Tensor& tensor, int root);
  void barrier();

  class Pending;  // an all_reduce_sum in flight
  std::shared_ptr<Pending> all_reduce_sum_async(at::Tensor& tensor);
  void wait(Pending& pending);

 private:
  struct Impl;
  ProcessGroup(WorkerPlace place, std::unique_ptr<Impl> impl);
  WorkerPlace place_;
  std::unique_ptr<Impl> impl_;
};

// Sums the gradients of `parameters` across the group, in buckets of about bucket_bytes. During the
// backward pass of the micro-batch that ends an accumulation window, a bucket is sent as soon as every
// gradient in it is final (post-accumulate hooks), so communication overlaps the rest of the backward.
// Buckets go out in a fixed order (reverse parameter order, as backward produces them), the same on
// every worker. A worker with no blocks in a micro-batch simply has nothing ready; finish() sends the rest.
class GradientReducer {
 public:
  GradientReducer(ProcessGroup& group, std::vector<at::Tensor> parameters, int64_t bucket_bytes = 25 << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before a micro-batch's backward: reduce during it (the window's last) or not.
  void prepare_for_backward(bool reduce);
  // After the window's last backward: sends the buckets not yet sent, waits for all and writes the sums
  // into the parameters' .grad (undefined gradients count as zeros).
  void finish();
  // Buckets of the last window that went out during the backward pass rather than in finish().
  size_t buckets_sent_during_backward() const { return sent_during_backward_; }
  size_t bucket_count() const;

 private:
  struct Bucket;
  void on_gradient_ready(size_t parameter);
  void send_ready_buckets();
  void send(Bucket& bucket);

  ProcessGroup& group_;
  std::vector<at::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // per parameter
  std::vector<bool> ready_;        // per parameter, this window
  std::mutex mutex_;  // hooks may run on autograd's device threads
  size_t next_to_send_ = 0;
  size_t sent_during_backward_ = 0;
  bool reducing_ = false;
  bool refired_ = false;  // a gradient changed after its bucket was sent: finish() reduces again
};

// `autotrain train --nproc-per-node N` (and --nnodes / --node-rank): runs N copies of this binary with
// `arguments` and torchrun's variables set, forwards SIGINT / SIGTERM to them once, and when one fails stops
// the others. Returns the exit code for the launcher: 0 if all succeeded, else the first failure's.
// A TCP port free on 127.0.0.1 now (for a rendezvous started moments later).
int free_loopback_port();

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port (single node only)
};
int launch_workers(const LaunchOptions& options, const std::vector<std::string>& arguments);

}  // namespace autotrain
