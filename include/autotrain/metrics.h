// Metrics as JSON lines (one object per line, flushed at once) that a user can plot or tail.
#pragma once

#include <fstream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace autotrain {

class TensorBoardWriter;

class MetricsWriter {
 public:
  // Appends to `path` (created with its folder when missing), so a resumed run continues the file. With a
  // `tensorboard_dir`, every record's numbers also go to a TensorBoard event file there (autotrain/tensorboard.h).
  explicit MetricsWriter(const std::string& path, const std::string& tensorboard_dir = "");
  ~MetricsWriter();
  MetricsWriter(MetricsWriter&&) noexcept;
  MetricsWriter& operator=(MetricsWriter&&) noexcept;
  // Writes `record` plus "time" (seconds since the Unix epoch) when it has none; to TensorBoard, each number but
  // "step" and "time" as a scalar at the record's step (tag: tensorboard_tag).
  void write(nlohmann::json record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

// Reads every record of a metrics file (for tests and tools); throws Error naming the line on bad JSON.
std::vector<nlohmann::json> read_metrics(const std::string& path);

// Rewrites `path` keeping only the records whose "step" is at most `step` (a resumed run drops what the
// interrupted one logged after its checkpoint; step 0 empties the file). A missing file stays missing.
void keep_metrics_through_step(const std::string& path, int64_t step);

// Draws the "loss" (and "eval_loss") of the records in `metrics_path` against their step as an SVG line
// chart at `svg_path`.
void write_loss_curve_svg(const std::string& metrics_path, const std::string& svg_path);

}  // namespace autotrain
