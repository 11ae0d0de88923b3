// Data-parallel training through the binary on loopback (c10d gloo): W workers with batch_size B train
// the adapter of one process with batch_size W x B; the torchrun environment and two "nodes" on one machine
// give the same; a worker that dies ends the job; a resume needs the same number of workers.
#include <gtest/gtest.h>

#include <unistd.h>

#include <thread>

#include <nlohmann/json.hpp>

#include "autotrain/distributed.h"
#include "autotrain/metrics.h"
#include "autotrain/safetensors.h"
#include "test_util.h"

namespace autotrain {
namespace {

const std::string kFixtures = AUTOTRAIN_FIXTURES_DIR;

// The example data in blocks of 32 give 511 blocks: with 2 x 3 blocks per micro-batch the epoch's last
// micro-batch has 1 block, the first worker's, so the second has nothing in it. Dropout 0: the workers'
// dropout masks would differ from one process's.
std::string write_config(const testing::TempDir& dir, int64_t batch_size, int64_t epochs = 1) {
  nlohmann::json config = {
      {"model", kFixtures + "/models/llama"}, {"project_name", "run"},
      {"data_path", std::string(AUTOTRAIN_SOURCE_DIR) + "/configs/example/data"},
      {"block_size", 32}, {"lr", 0.003}, {"epochs", epochs}, {"batch_size", batch_size},
      {"gradient_accumulation", 2}, {"scheduler", "cosine"}, {"warmup_ratio", 0.1}, {"max_grad_norm", 1.0},
      {"quantization", "int4"}, {"target_modules", "q_proj, v_proj, down_proj"}, {"peft", true},
      {"lora_r", 8}, {"lora_alpha", 16}, {"lora_dropout", 0.0}, {"mixed_precision", "none"}, {"seed", 5}};
  testing::write_text(dir.file("params.json"), config.dump(2));
  return dir.file("params.json");
}

// `cd DIR;` stays in the foreground so that `&` puts autotrain itself, not a subshell, in the background;
// `environment` (VAR=value ...) is set for autotrain alone; each "node" gets its own token cache.
std::string train_command(const testing::TempDir& dir, const std::string& extra = "",
                          const std::string& environment = "", const std::string& cache = "cache") {
  return "cd " + testing::quote(dir.path().string()) + " || exit 9; " + environment + " " +
         testing::quote(AUTOTRAIN_BINARY) + " train --config params.json --cache-dir " + cache + extra;
}

// Shell lines that start two workers in `dir` from torchrun's variables on a free port (rank 1 with a token
// cache of its own), as $r0 and $r1 in the background, and return once rank 0 has written a metrics record.
std::string torchrun_pair_training(const testing::TempDir& dir, const std::string& ddp_timeout) {
  const std::string port = std::to_string(free_loopback_port());
  const std::string env = " WORLD_SIZE=2 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port;
  const std::string extra = " --ddp-timeout " + ddp_timeout;
  return train_command(dir, extra, "RANK=0" + env) + " > rank0.txt 2>&1 & r0=$!; " +
         train_command(dir, extra, "RANK=1" + env, "cache1") + " > rank1.txt 2>&1 & r1=$!; " +
         "for i in $(seq 1 3000); do [ -s run/metrics.jsonl ] && break; sleep 0.02; done; ";
}

// The largest |difference| over every tensor of two adapter files with the same names.
double max_adapter_difference(const std::string& a_path, const std::string& b_path) {
  auto a = SafetensorsFile::open(a_path), b = SafetensorsFile::open(b_path);
  EXPECT_EQ(a->names(), b->names());
  double largest = 0;
  for (const std::string& name : a->names()) {
    largest = std::max(largest, (a->tensor(name) - b->tensor(name)).abs().max().item<double>());
  }
  return largest;
}

// One process, batch 6: what two workers of batch 3 must reproduce.
const testing::TempDir& single_process_run() {
  static testing::TempDir dir;
  static bool done = [] {
    write_config(dir, 6);
    auto result = testing::run_command(train_command(dir));
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return true;
  }();
  (void)done;
  return dir;
}

// Tolerance 3e-6: the workers' gradient sums add the same per-block terms in another grouping than one
// process's matmuls do (float32 rounding, ~1e-7 relative), and the GEMMs of 3 and of 6 blocks round
// differently; Adam carries those differences into the weights over 15 steps. Measured: 4.9e-7 with MKL's
// GEMMs (AUTOTRAIN_ONEDNN_LINEAR=0), 1.2e-6 with oneDNN's (cpu_linear, the default), whose fp32 sums round
// about twice as far from the exact ones (src/cpu_linear.h); the bound leaves 2.5x of room over the latter.
constexpr double kTolerance = 3e-6;

void expect_same_run(const testing::TempDir& dir) {
  const testing::TempDir& single = single_process_run();
  EXPECT_LE(max_adapter_difference(single.file("run/adapter_model.safetensors"), dir.file("run/adapter_model.safetensors")),
            kTolerance);
  const auto ours = read_metrics(dir.file("run/metrics.jsonl")), reference = read_metrics(single.file("run/metrics.jsonl"));
  ASSERT_EQ(ours.size(), reference.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    if (!reference[i].contains("loss")) continue;
    EXPECT_NEAR(ours[i].at("loss").get<double>(), reference[i].at("loss").get<double>(), 1e-5) << "line " << i;
  }
}

TEST(Distributed, TwoWorkersTrainTheAdapterOfOneProcessWithTwiceTheMicroBatch) {
  testing::TempDir dir;
  write_config(dir, 3);
  auto result = testing::run_command(train_command(dir, " --nproc-per-node 2"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("x 2 workers"), std::string::npos) << result.output;
  expect_same_run(dir);
}

TEST(Distributed, TwoNodesOnOneMachineTrainTheSame) {
  // Two launches with node ranks 0 and 1 on loopback, one worker each (the torchrun variables alone are
  // exercised by the tests of dying and hung workers below).
  testing::TempDir dir;
  write_config(dir, 3);
  const std::string port = std::to_string(free_loopback_port());
  const std::string node = " --nnodes 2 --nproc-per-node 1 --master-addr 127.0.0.1 --master-port " + port;
  // Appended piece by piece: GCC 12 warns falsely (-Wstringop-overflow) on "(" + a temporary string.
  std::string script = "(";
  script += train_command(dir, node + " --node-rank 0");
  script += ") > node0.txt 2>&1 & n0=$!; (";
  script += train_command(dir, node + " --node-rank 1", "", "cache1");
  script += ") > node1.txt 2>&1; r1=$?; wait $n0; r0=$?; echo \"node0=$r0 node1=$r1\"; cat node0.txt node1.txt";
  // Braced: a bare `cd && a & b` would run b, and write node1.txt, in the test's own folder.
  auto result = testing::run_command("cd " + testing::quote(dir.path().string()) + " && { " + script + "; }");
  ASSERT_NE(result.output.find("node0=0 node1=0"), std::string::npos) << result.output;
  expect_same_run(dir);
}

TEST(Distributed, AWorkerThatDiesEndsTheJobWithAMessage) {
  // kill -9 one of two workers mid-run: the launcher stops the other and exits non-zero, long before the
  // ddp timeout; a worker started by environment (no launcher) whose peer dies exits non-zero by itself.
  testing::TempDir dir;
  write_config(dir, 3, /*epochs=*/50);
  const std::string script =
      train_command(dir, " --nproc-per-node 2 --ddp-timeout 60") + " > out.txt 2>&1 & pid=$!; "
      "for i in $(seq 1 3000); do [ -s run/metrics.jsonl ] && break; sleep 0.02; done; "
      "worker=$(cat /proc/$pid/task/*/children | tr ' ' '\\n' | sed -n 2p); kill -9 $worker; "
      "start=$(date +%s); wait $pid; code=$?; echo \"exit=$code seconds=$(( $(date +%s) - start ))\"; cat out.txt";
  auto result = testing::run_command("cd " + testing::quote(dir.path().string()) + " && " + script);
  EXPECT_EQ(result.output.find("exit=0 "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("exit="), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("worker rank "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("killed by signal 9"), std::string::npos) << result.output;
  const auto seconds = std::stoi(result.output.substr(result.output.find("seconds=") + 8));
  EXPECT_LT(seconds, 30) << result.output;

  testing::TempDir alone;
  write_config(alone, 3, /*epochs=*/50);
  const std::string pair =
      torchrun_pair_training(alone, "20") +
      "kill -9 $r1; start=$(date +%s); wait $r0; code=$?; echo \"exit=$code seconds=$(( $(date +%s) - start ))\"; "
      "cat rank0.txt";
  auto survivor = testing::run_command("cd " + testing::quote(alone.path().string()) + " && " + pair);
  EXPECT_EQ(survivor.output.find("exit=0 "), std::string::npos) << survivor.output;
  EXPECT_NE(survivor.output.find("error: "), std::string::npos) << survivor.output;
  EXPECT_NE(survivor.output.find("another worker stopped"), std::string::npos) << survivor.output;
  EXPECT_LT(std::stoi(survivor.output.substr(survivor.output.find("seconds=") + 8)), 40) << survivor.output;
}

TEST(Distributed, AHungWorkerMakesTheOtherGiveUpAfterTheTimeout) {
  // SIGSTOP: the peer is alive (its sockets stay open) but silent; only --ddp-timeout ends the wait.
  testing::TempDir dir;
  write_config(dir, 3, /*epochs=*/50);
  const std::string pair =
      torchrun_pair_training(dir, "5") +
      "kill -STOP $r1; start=$(date +%s); wait $r0; code=$?; kill -9 $r1; "
      "echo \"exit=$code seconds=$(( $(date +%s) - start ))\"; cat rank0.txt";
  auto result = testing::run_command("cd " + testing::quote(dir.path().string()) + " && " + pair);
  EXPECT_NE(result.output.find("exit=1 "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("Timed out"), std::string::npos) << result.output;
  const int seconds = std::stoi(result.output.substr(result.output.find("seconds=") + 8));
  EXPECT_GE(seconds, 4) << result.output;
  EXPECT_LT(seconds, 30) << result.output;
}

TEST(Distributed, StoppedAndResumedWithTheSameWorkersEndsAsOneRunAndOtherWorkerCountsAreRefused) {
  testing::TempDir dir;
  write_config(dir, 3);
  auto first = testing::run_command(train_command(dir, " --nproc-per-node 2 --stop-after-steps 6"));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto refused = testing::run_command(train_command(dir));
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("written by a run of 2 worker(s) and this run has 1"), std::string::npos) << refused.output;
  auto rest = testing::run_command(train_command(dir, " --nproc-per-node 2"));
  ASSERT_EQ(rest.exit_code, 0) << rest.output;
  EXPECT_NE(rest.output.find("resuming from"), std::string::npos) << rest.output;
  expect_same_run(dir);
}

TEST(Distributed, CtrlCStopsEveryWorkerWithACheckpointAndExits130) {
  testing::TempDir dir;
  write_config(dir, 3, /*epochs=*/50);
  const std::string script =
      train_command(dir, " --nproc-per-node 2") + " > out.txt 2>&1 & pid=$!; "
      "for i in $(seq 1 3000); do [ -s run/metrics.jsonl ] && break; sleep 0.02; done; "
      "kill -INT $pid; wait $pid; echo \"exit=$?\"; cat out.txt; ls run";
  auto result = testing::run_command("cd " + testing::quote(dir.path().string()) + " && " + script);
  EXPECT_NE(result.output.find("exit=130"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("interrupted by SIGINT"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("checkpoint-"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace autotrain

namespace autotrain {
namespace {

// Two workers as two threads of this process on loopback, each with a small "model" of five parameters
// and its own input: after finish() both hold the sum of their gradients (exactly: one float addition of
// two terms in gloo), accumulated over two micro-batches of which only the last reduces; with 64-byte
// buckets the buckets go out during backward, in the same order on both.
TEST(GradientReducer, SumsTheGradientsOfTwoWorkersAndSendsBucketsDuringBackward) {
  const int port = free_loopback_port();
  std::vector<std::vector<at::Tensor>> gradients(2);
  std::vector<size_t> sent_early(2), buckets(2);
  auto worker = [&](int rank) {
    WorkerPlace place;
    place.rank = rank;
    place.world_size = 2;
    place.master_port = port;
    auto group = ProcessGroup::connect(place, std::chrono::seconds(60));
    // Generators of their own: the two threads must not share the global one.
    at::Generator same = at::detail::createCPUGenerator(1);  // the same parameters on both
    std::vector<at::Tensor> parameters;
    for (int i = 0; i < 5; ++i) parameters.push_back(at::randn({4, 4}, same).requires_grad_(true));
    GradientReducer reducer(*group, parameters, /*bucket_bytes=*/64);
    at::Generator data = at::detail::createCPUGenerator(100 + rank);  // different data on each
    for (int micro = 0; micro < 2; ++micro) {
      reducer.prepare_for_backward(/*reduce=*/micro == 1);
      at::Tensor x = at::randn({3, 4}, data);
      for (const at::Tensor& w : parameters) x = at::tanh(at::matmul(x, w));
      x.sum().backward();
    }
    // What this worker alone accumulated, before the reduction overwrites it.
    data = at::detail::createCPUGenerator(100 + rank);
    std::vector<at::Tensor> local;
    {
      std::vector<at::Tensor> copies;
      for (const at::Tensor& w : parameters) copies.push_back(w.detach().clone().requires_grad_(true));
      for (int micro = 0; micro < 2; ++micro) {
        at::Tensor x = at::randn({3, 4}, data);
        for (const at::Tensor& w : copies) x = at::tanh(at::matmul(x, w));
        x.sum().backward();
      }
      for (const at::Tensor& w : copies) local.push_back(w.grad().clone());
    }
    reducer.finish();
    sent_early[rank] = reducer.buckets_sent_during_backward();
    buckets[rank] = reducer.bucket_count();
    for (size_t i = 0; i < parameters.size(); ++i) {
      gradients[rank].push_back(parameters[i].grad().clone());
      gradients[rank].push_back(local[i]);
    }
  };
  std::thread other(worker, 1);
  worker(0);
  other.join();
  ASSERT_EQ(buckets[0], 5u);  // 64 bytes = one 4 x 4 float tensor per bucket
  EXPECT_GE(sent_early[0], 4u);  // all but possibly the last bucket before finish()
  EXPECT_EQ(sent_early[0], sent_early[1]);
  for (size_t i = 0; i < 5; ++i) {
    const at::Tensor& reduced0 = gradients[0][2 * i];
    const at::Tensor& reduced1 = gradients[1][2 * i];
    const at::Tensor sum = gradients[0][2 * i + 1] + gradients[1][2 * i + 1];
    EXPECT_TRUE(at::equal(reduced0, reduced1)) << i;
    EXPECT_TRUE(at::allclose(reduced0, sum, /*rtol=*/0, /*atol=*/1e-6)) << i;
  }
}

}  // namespace
}  // namespace autotrain
