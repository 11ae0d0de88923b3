// TensorBoard event files, for AutoTrain's "log": "tensorboard": what transformers' TensorBoardCallback writes
// through torch's SummaryWriter. A file is TFRecords (length, masked CRC-32C, data, masked CRC-32C), each an Event
// protobuf: first {wall_time, file_version "brain.Event:2"}, then {wall_time, step, summary {value {tag,
// simple_value}}} per scalar (tensorflow/core/util/event.proto, summary.proto; record_writer.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace autotrain {

// CRC-32C (Castagnoli), as TFRecord checksums use it before masking.
uint32_t crc32c(const void* data, size_t size);

// transformers' default run folder: output_dir/runs/<%b%d_%H-%M-%S>_<hostname> (default_logdir), so that each
// start (a resumed run too) is a run of its own in TensorBoard.
std::string tensorboard_run_dir(const std::string& output_dir);

// The tag transformers gives a logged key (rewrite_logs): "eval_loss" -> "eval/loss", others "train/<key>";
// our "lr" is its "learning_rate".
std::string tensorboard_tag(const std::string& key);

class TensorBoardWriter {
 public:
  // Creates `log_dir` and in it events.out.tfevents.<seconds>.<hostname>.<pid>.0 (SummaryWriter's name), which
  // starts with the file_version event. Throws Error naming the file when it cannot.
  explicit TensorBoardWriter(const std::string& log_dir);

  void scalar(const std::string& tag, double value, int64_t step, double wall_time);
  // Flushes what was written; throws Error naming the file on a write failure (disk full).
  void flush();
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);

  std::string path_;
  std::ofstream out_;
};

}  // namespace autotrain
