// Independent pieces of work (tokenizing a text, a preference pair) gathered into batches, each batch run on as
// many threads as libtorch uses (at::get_num_threads(): one per core unless OMP_NUM_THREADS says otherwise), each
// thread taking the next task not yet taken, and the results then handed on in the order the tasks were added: what
// comes out is the same whatever the thread count. A batch is a few MB of input, so starting its threads costs far
// less than running it. std::thread rather than at::parallel_for, whose OpenMP region is inert in files built
// without -fopenmp (and -fopenmp would bring a second OpenMP runtime beside libtorch's). Internal to src/.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace autotrain {

template <typename Result>
class OrderedBatches {
 public:
  using Task = std::function<Result()>;
  using Sink = std::function<void(Result&)>;

  explicit OrderedBatches(Sink sink) : sink_(std::move(sink)) {}

  // Adds a task whose input is about `bytes` long; runs the batch once it holds 4096 tasks or 4 MB.
  void add(Task task, size_t bytes) {
    tasks_.push_back(std::move(task));
    bytes_ += bytes;
    if (tasks_.size() >= kMostTasks || bytes_ >= kMostBytes) flush();
  }

  // Runs the tasks not yet run and hands their results to the sink in order. A task that throws: the results
  // before it are handed on, then its exception is rethrown (the first in order, whichever thread ran it).
  void flush() {
    if (tasks_.empty()) return;
    const std::vector<Task> tasks = std::move(tasks_);
    tasks_.clear();
    bytes_ = 0;
    std::vector<std::optional<Result>> results(tasks.size());
    std::vector<std::exception_ptr> errors(tasks.size());
    std::atomic<size_t> next{0};
    const auto work = [&] {
      for (size_t i = next++; i < tasks.size(); i = next++) {
        try {
          results[i] = tasks[i]();
        } catch (...) {
          errors[i] = std::current_exception();
        }
      }
    };
    const auto wanted = static_cast<size_t>(std::max(1, at::get_num_threads()));
    std::vector<std::thread> helpers;
    for (size_t t = 1; t < std::min(wanted, tasks.size()); ++t) helpers.emplace_back(work);
    work();
    for (std::thread& helper : helpers) helper.join();
    for (size_t i = 0; i < tasks.size(); ++i) {
      if (errors[i]) std::rethrow_exception(errors[i]);
      sink_(*results[i]);
    }
  }

 private:
  static constexpr size_t kMostTasks = 4096, kMostBytes = size_t(4) << 20;
  Sink sink_;
  std::vector<Task> tasks_;
  size_t bytes_ = 0;
};

}  // namespace autotrain
