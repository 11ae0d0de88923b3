#include "autotrain/metrics.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/tensorboard.h"

namespace autotrain {

MetricsWriter::MetricsWriter(const std::string& path, const std::string& tensorboard_dir) : path_(path) {
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) make_directories(parent.string());
  out_.open(path, std::ios::app);
  if (!out_) throw Error(path + ": cannot open the metrics file for appending; check the folder is writable");
  if (!tensorboard_dir.empty()) tensorboard_ = std::make_unique<TensorBoardWriter>(tensorboard_dir);
}

MetricsWriter::~MetricsWriter() = default;
MetricsWriter::MetricsWriter(MetricsWriter&&) noexcept = default;
MetricsWriter& MetricsWriter::operator=(MetricsWriter&&) noexcept = default;

void MetricsWriter::write(nlohmann::json record) {
  if (!record.contains("time")) {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    record["time"] = std::chrono::duration<double>(now).count();
  }
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) {
    throw Error(path_ + ": writing metrics failed (" + std::strerror(errno) +
                "); free some space or choose another project_name folder");
  }
  if (!tensorboard_) return;
  const int64_t step = record.value("step", int64_t{0});
  const double time = record["time"].get<double>();
  for (const auto& [key, value] : record.items())
    if (value.is_number() && key != "step" && key != "time")
      tensorboard_->scalar(tensorboard_tag(key), value.get<double>(), step, time);
  tensorboard_->flush();
}

namespace {

// The records of a metrics file's text, one JSON object per line.
std::vector<nlohmann::json> parse_records(const std::string& text, const std::string& path) {
  std::vector<nlohmann::json> records;
  std::istringstream lines(text);
  std::string line;
  for (size_t number = 1; std::getline(lines, line); ++number) {
    if (line.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {  // parse errors and numbers out of range alike
      throw Error(path + ": line " + std::to_string(number) + " is not valid JSON; delete the line or the file");
    }
  }
  return records;
}

}  // namespace

std::vector<nlohmann::json> read_metrics(const std::string& path) { return parse_records(read_file(path), path); }

void keep_metrics_through_step(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return;
  std::string text = read_file(path);
  // A run that died on a full disk may have left half a line at the end: that record is dropped.
  if (!text.empty() && text.back() != '\n') {
    const size_t last_newline = text.rfind('\n');
    text.erase(last_newline == std::string::npos ? 0 : last_newline + 1);
  }
  std::string kept;
  for (const auto& record : parse_records(text, path)) {
    if (record.value("step", int64_t{0}) <= step) kept += record.dump() + "\n";
  }
  write_file_atomic(path, kept);
}

namespace {

// One polyline of (step, value) points in chart coordinates.
struct Series {
  std::string key, color;
  std::vector<std::pair<double, double>> points;
};

}  // namespace

void write_loss_curve_svg(const std::string& metrics_path, const std::string& svg_path) {
  std::vector<Series> series = {{"loss", "#1f77b4", {}}, {"eval_loss", "#d62728", {}}};
  double max_step = 1, low = INFINITY, high = -INFINITY;
  for (const auto& record : read_metrics(metrics_path)) {
    for (auto& s : series) {
      auto it = record.find(s.key);
      if (it == record.end() || !it->is_number() || !record.contains("step")) continue;
      const double step = record["step"].get<double>(), value = it->get<double>();
      if (!std::isfinite(value)) continue;
      s.points.emplace_back(step, value);
      max_step = std::max(max_step, step);
      low = std::min(low, value);
      high = std::max(high, value);
    }
  }
  if (!std::isfinite(low)) low = 0, high = 1;
  if (high - low < 1e-9) high = low + 1;
  const double width = 640, height = 360, left = 60, right = 20, top = 20, bottom = 40;
  auto x_of = [&](double step) { return left + (width - left - right) * step / max_step; };
  auto y_of = [&](double value) { return top + (height - top - bottom) * (high - value) / (high - low); };
  char buffer[256];
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"360\" font-family=\"sans-serif\" "
                    "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  std::snprintf(buffer, sizeof buffer,
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n"
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n",
                left, height - bottom, width - right, height - bottom, left, top, left, height - bottom);
  svg += buffer;
  std::snprintf(buffer, sizeof buffer,
                "<text x=\"%g\" y=\"%g\">%.4g</text>\n<text x=\"%g\" y=\"%g\">%.4g</text>\n"
                "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">step %g</text>\n",
                4.0, top + 4, high, 4.0, height - bottom, low, width - right, height - 10, max_step);
  svg += buffer;
  double legend_y = top + 14;
  for (const auto& s : series) {
    if (s.points.empty()) continue;
    svg += "<polyline fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"1.5\" points=\"";
    for (const auto& [step, value] : s.points) {
      std::snprintf(buffer, sizeof buffer, "%.1f,%.1f ", x_of(step), y_of(value));
      svg += buffer;
    }
    svg += "\"/>\n";
    std::snprintf(buffer, sizeof buffer, "<text x=\"%g\" y=\"%g\" fill=\"%s\" text-anchor=\"end\">%s</text>\n",
                  width - right, legend_y, s.color.c_str(), s.key.c_str());
    svg += buffer;
    legend_y += 14;
  }
  svg += "</svg>\n";
  write_file_atomic(svg_path, svg);
}

}  // namespace autotrain
