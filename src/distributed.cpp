#include "autotrain/distributed.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// libtorch_cpu carries gloo and c10d's gloo backend; its header needs this switch and gloo's headers
// (Debian's libgloo-dev: ProcessGroupGloo holds gloo objects only through pointers, so the header's
// version does not change its layout). Torch's CMake config may pass it already.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "autotrain/error.h"
#include "autotrain/logging.h"

namespace autotrain {
namespace {

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

int environment_int(const char* name, int minimum) {
  const char* text = std::getenv(name);
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value < minimum || value > 1 << 30) {
    throw config_error(log::cat("environment variable ", name, "=", text, " is not an integer >= ", minimum,
                                "; set it as torchrun does or unset RANK and WORLD_SIZE for one process"));
  }
  return static_cast<int>(value);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

// The network devices gloo binds to: GLOO_SOCKET_IFNAME's interfaces as in PyTorch, else loopback for a
// job on one machine, else the address this machine's hostname resolves to.
std::vector<std::shared_ptr<::gloo::transport::Device>> gloo_devices(const WorkerPlace& place) {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  if (const char* interfaces = std::getenv("GLOO_SOCKET_IFNAME"); interfaces && *interfaces) {
    std::string list = interfaces;
    for (size_t begin = 0; begin <= list.size();) {
      const size_t end = std::min(list.find(',', begin), list.size());
      if (end > begin) devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(list.substr(begin, end - begin)));
      begin = end + 1;
    }
  } else if (is_loopback(place.master_addr)) {
    devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return devices;
}

}  // namespace

std::optional<WorkerPlace> worker_place_from_environment() {
  const bool has_rank = std::getenv("RANK") != nullptr, has_world = std::getenv("WORLD_SIZE") != nullptr;
  if (!has_rank && !has_world) return std::nullopt;
  if (has_rank != has_world) {
    throw config_error(std::string("environment variable ") + (has_rank ? "WORLD_SIZE" : "RANK") +
                       " is missing: a distributed worker needs RANK and WORLD_SIZE (torchrun sets both)");
  }
  WorkerPlace place;
  place.world_size = environment_int("WORLD_SIZE", 1);
  place.rank = environment_int("RANK", 0);
  if (place.rank >= place.world_size) {
    throw config_error(log::cat("environment variable RANK=", place.rank, " is not below WORLD_SIZE=", place.world_size));
  }
  place.local_rank = std::getenv("LOCAL_RANK") ? environment_int("LOCAL_RANK", 0) : place.rank;
  if (const char* address = std::getenv("MASTER_ADDR"); address && *address) place.master_addr = address;
  if (std::getenv("MASTER_PORT")) place.master_port = environment_int("MASTER_PORT", 1);
  return place;
}

// ---- ProcessGroup ----------------------------------------------------------------------------------

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  std::chrono::milliseconds timeout;
};

class ProcessGroup::Pending {
 public:
  explicit Pending(c10::intrusive_ptr<c10d::Work> work) : work(std::move(work)) {}
  c10::intrusive_ptr<c10d::Work> work;
};

ProcessGroup::ProcessGroup(WorkerPlace place, std::unique_ptr<Impl> impl)
    : place_(std::move(place)), impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::unique_ptr<ProcessGroup> ProcessGroup::connect(const WorkerPlace& place, std::chrono::milliseconds timeout) {
  auto impl = std::make_unique<Impl>();
  impl->timeout = timeout;
  const std::string where = log::cat(place.master_addr, ":", place.master_port);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(place.master_port);
    store_options.isServer = place.rank == 0;
    store_options.numWorkers = static_cast<size_t>(place.world_size);
    store_options.waitWorkers = true;
    store_options.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(place.master_addr, store_options);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices = gloo_devices(place);
    impl->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, place.rank, place.world_size, options);
  } catch (const std::exception& e) {
    throw Error(log::cat("worker ", place.rank, "/", place.world_size, ": rendezvous at MASTER_ADDR:MASTER_PORT = ", where,
                         " failed (", first_line(e.what()), "); check that address and port, that the port is free on "
                         "the rank-0 machine and that all ", place.world_size, " workers start"));
  }
  log::debug(log::cat("worker ", place.rank, "/", place.world_size, " joined the group at ", where));
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(place, std::move(impl)));
}

namespace {
void wait_for(c10d::Work& work, const WorkerPlace& place, std::chrono::milliseconds timeout, const char* what) {
  try {
    work.wait();
  } catch (const std::exception& e) {
    throw Error(log::cat("worker ", place.rank, "/", place.world_size, ": ", what, " across the workers failed (",
                         first_line(e.what()), "): another worker stopped or did not answer within ",
                         timeout.count() / 1000, " s (--ddp-timeout); the newest checkpoint holds the state, rerun to resume"));
  }
}
}  // namespace

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) { wait(*all_reduce_sum_async(tensor)); }

void ProcessGroup::all_reduce_max(at::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::MAX;
  wait_for(*impl_->gloo->allreduce(tensors, options), place_, impl_->timeout, "an all-reduce");
}

void ProcessGroup::broadcast(at::Tensor& tensor, int root) {
  std::vector<at::Tensor> tensors{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  wait_for(*impl_->gloo->broadcast(tensors, options), place_, impl_->timeout, "a broadcast");
}

void ProcessGroup::barrier() { wait_for(*impl_->gloo->barrier(), place_, impl_->timeout, "a barrier"); }

std::shared_ptr<ProcessGroup::Pending> ProcessGroup::all_reduce_sum_async(at::Tensor& tensor) {
  std::vector<at::Tensor> tensors{tensor};
  return std::make_shared<Pending>(impl_->gloo->allreduce(tensors));
}

void ProcessGroup::wait(Pending& pending) { wait_for(*pending.work, place_, impl_->timeout, "an all-reduce"); }

// ---- GradientReducer -------------------------------------------------------------------------------

struct GradientReducer::Bucket {
  std::vector<size_t> parameters;
  std::vector<int64_t> offsets;  // of each parameter in buffer
  at::Tensor buffer;             // flat, the parameters' dtype
  size_t ready = 0;
  std::shared_ptr<ProcessGroup::Pending> pending;
};

namespace {
class ReadyHook : public torch::autograd::PostAccumulateGradHook {
 public:
  ReadyHook(std::function<void()> on_ready) : on_ready_(std::move(on_ready)) {}
  void operator()(const torch::autograd::Variable&) override { on_ready_(); }

 private:
  std::function<void()> on_ready_;
};
}  // namespace

GradientReducer::GradientReducer(ProcessGroup& group, std::vector<at::Tensor> parameters, int64_t bucket_bytes)
    : group_(group), parameters_(std::move(parameters)), bucket_of_(parameters_.size()), ready_(parameters_.size()) {
  int64_t bytes = 0;
  for (size_t n = parameters_.size(); n-- > 0;) {  // reverse order: the order backward finishes them
    const at::Tensor& parameter = parameters_[n];
    const bool new_bucket = buckets_.empty() || bytes >= bucket_bytes ||
                            buckets_.back().buffer.scalar_type() != parameter.scalar_type();
    if (new_bucket) {
      buckets_.emplace_back();
      buckets_.back().buffer = at::empty({0}, parameter.options().requires_grad(false));
      bytes = 0;
    }
    Bucket& bucket = buckets_.back();
    bucket.offsets.push_back(bucket.buffer.numel());
    bucket.parameters.push_back(n);
    bucket.buffer = at::empty({bucket.buffer.numel() + parameter.numel()}, bucket.buffer.options());
    bucket_of_[n] = buckets_.size() - 1;
    bytes += parameter.numel() * parameter.element_size();
    torch::autograd::impl::set_post_acc_grad_hooks(parameter, std::make_unique<ReadyHook>([this, n] { on_gradient_ready(n); }));
  }
}

GradientReducer::~GradientReducer() {
  for (const at::Tensor& parameter : parameters_) torch::autograd::impl::set_post_acc_grad_hooks(parameter, nullptr);
}

size_t GradientReducer::bucket_count() const { return buckets_.size(); }

void GradientReducer::prepare_for_backward(bool reduce) {
  std::lock_guard<std::mutex> lock(mutex_);
  reducing_ = reduce;
  if (reduce) sent_during_backward_ = 0;
}

void GradientReducer::on_gradient_ready(size_t parameter) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!reducing_) return;
  if (ready_[parameter]) {  // used twice in one backward: its bucket may have gone out early
    refired_ = true;
    return;
  }
  ready_[parameter] = true;
  ++buckets_[bucket_of_[parameter]].ready;
  send_ready_buckets();
}

void GradientReducer::send_ready_buckets() {
  while (next_to_send_ < buckets_.size() &&
         buckets_[next_to_send_].ready == buckets_[next_to_send_].parameters.size()) {
    send(buckets_[next_to_send_++]);
    ++sent_during_backward_;
  }
}

void GradientReducer::send(Bucket& bucket) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < bucket.parameters.size(); ++i) {
    const at::Tensor& parameter = parameters_[bucket.parameters[i]];
    at::Tensor slot = bucket.buffer.narrow(0, bucket.offsets[i], parameter.numel());
    if (parameter.grad().defined()) {
      slot.copy_(parameter.grad().reshape({-1}));
    } else {
      slot.zero_();
    }
  }
  bucket.pending = group_.all_reduce_sum_async(bucket.buffer);
}

void GradientReducer::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  reducing_ = false;
  while (next_to_send_ < buckets_.size()) send(buckets_[next_to_send_++]);
  for (Bucket& bucket : buckets_) group_.wait(*bucket.pending);
  if (refired_) {  // the same on every worker (same model): reduce the final gradients once more
    for (Bucket& bucket : buckets_) send(bucket);
    for (Bucket& bucket : buckets_) group_.wait(*bucket.pending);
  }
  at::NoGradGuard no_grad;
  for (Bucket& bucket : buckets_) {
    for (size_t i = 0; i < bucket.parameters.size(); ++i) {
      at::Tensor parameter = parameters_[bucket.parameters[i]];
      at::Tensor sum = bucket.buffer.narrow(0, bucket.offsets[i], parameter.numel()).view(parameter.sizes());
      if (parameter.grad().defined()) {
        parameter.mutable_grad().copy_(sum);
      } else {
        parameter.mutable_grad() = sum.clone();
      }
    }
    bucket.ready = 0;
    bucket.pending.reset();
  }
  std::fill(ready_.begin(), ready_.end(), false);
  next_to_send_ = 0;
  refired_ = false;
}

// ---- launch_workers --------------------------------------------------------------------------------

namespace {

std::atomic<int> g_launcher_signal{0};
extern "C" void on_launcher_signal(int signal) { g_launcher_signal.store(signal); }

}  // namespace

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) ::close(fd);
    throw Error("cannot find a free TCP port on 127.0.0.1 for the workers' rendezvous; pass --master-port");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

namespace {

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return log::cat("was killed by signal ", WTERMSIG(status));
  return log::cat("exited with code ", WEXITSTATUS(status));
}

}  // namespace

int launch_workers(const LaunchOptions& o, const std::vector<std::string>& arguments) {
  if (o.nproc_per_node < 1 || o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes) {
    throw config_error(log::cat("--nproc-per-node ", o.nproc_per_node, ", --nnodes ", o.nnodes, ", --node-rank ",
                                o.node_rank, ": need at least one worker per node and 0 <= node rank < nodes"));
  }
  if (o.nnodes > 1 && o.master_port == 0) {
    throw config_error("--nnodes > 1 needs --master-port (and --master-addr: the node-rank-0 machine's address), "
                       "the same on every node");
  }
  const int port = o.master_port != 0 ? o.master_port : free_loopback_port();
  const int world_size = o.nproc_per_node * o.nnodes;
  char executable[4096];
  const ssize_t length = ::readlink("/proc/self/exe", executable, sizeof(executable) - 1);
  if (length <= 0) throw Error("cannot find this program's path in /proc/self/exe to start the workers");
  executable[length] = '\0';

  std::vector<std::string> argv_strings{executable};
  argv_strings.insert(argv_strings.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (std::string& argument : argv_strings) argv.push_back(argument.data());
  argv.push_back(nullptr);

  g_launcher_signal.store(0);
  auto previous_int = std::signal(SIGINT, on_launcher_signal);
  auto previous_term = std::signal(SIGTERM, on_launcher_signal);
  const pid_t launcher = ::getpid();
  std::vector<pid_t> workers(o.nproc_per_node, -1);
  std::vector<bool> running(o.nproc_per_node, false);
  for (int local = 0; local < o.nproc_per_node; ++local) {
    const int rank = o.node_rank * o.nproc_per_node + local;
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("cannot start worker " + std::to_string(rank) + ": fork failed");
    if (pid == 0) {
      // Its own process group: a Ctrl-C in the terminal reaches the launcher only, which forwards it once.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != launcher) ::_exit(1);
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world_size).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
      ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      // The workers share the machine's cores (torchrun sets 1; a share keeps CPU training fast).
      if (!std::getenv("OMP_NUM_THREADS")) {
        const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1u, cores / o.nproc_per_node)).c_str(), 1);
      }
      ::execv(executable, argv.data());
      ::_exit(127);
    }
    workers[local] = pid;
    running[local] = true;
  }
  log::info(log::cat("started ", o.nproc_per_node, " worker(s) (ranks ", o.node_rank * o.nproc_per_node, "..",
                     (o.node_rank + 1) * o.nproc_per_node - 1, " of ", world_size, "), rendezvous at ", o.master_addr,
                     ":", port));

  int exit_code = 0, live = o.nproc_per_node, forwarded = 0;
  bool failed = false;
  auto kill_deadline = std::chrono::steady_clock::time_point::max();
  while (live > 0) {
    if (const int signal = g_launcher_signal.exchange(0); signal != 0) {  // forward each signal once
      ++forwarded;
      for (int local = 0; local < o.nproc_per_node; ++local)
        if (running[local]) ::kill(workers[local], signal);
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const auto it = std::find(workers.begin(), workers.end(), pid);
      if (it == workers.end()) continue;
      const int local = static_cast<int>(it - workers.begin());
      running[local] = false;
      --live;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && !failed) {
        failed = true;
        exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : kExitRuntime;
        // After a forwarded Ctrl-C the workers stop on their own (rank 0 may still be writing the checkpoint);
        // otherwise a failed worker leaves the others waiting in a collective: stop them.
        if (forwarded == 0) {
          log::error(log::cat("worker rank ", o.node_rank * o.nproc_per_node + local, " (pid ", pid, ") ",
                              describe_status(status), "; stopping the other workers"));
          for (int other = 0; other < o.nproc_per_node; ++other)
            if (running[other]) ::kill(workers[other], SIGTERM);
          kill_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
        }
      }
      continue;
    }
    if (std::chrono::steady_clock::now() > kill_deadline) {  // stuck in a collective with a dead peer
      for (int other = 0; other < o.nproc_per_node; ++other)
        if (running[other]) ::kill(workers[other], SIGKILL);
      kill_deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::signal(SIGINT, previous_int);
  std::signal(SIGTERM, previous_term);
  return exit_code;
}

}  // namespace autotrain
