#include "autotrain/metrics.h"

#include <chrono>
#include <filesystem>

#include "autotrain/error.h"
#include "autotrain/fileio.h"

namespace autotrain {

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) make_directories(parent.string());
  out_.open(path, std::ios::app);
  if (!out_) throw Error(path + ": cannot open the metrics file for appending; check the folder is writable");
}

void MetricsWriter::write(nlohmann::json record) {
  if (!record.contains("time")) {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    record["time"] = std::chrono::duration<double>(now).count();
  }
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw Error(path_ + ": writing metrics failed (disk full?)");
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open metrics file");
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    try {
      records.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::parse_error&) {
      throw Error(path + ": line " + std::to_string(number) + " is not valid JSON");
    }
  }
  return records;
}

}  // namespace autotrain
