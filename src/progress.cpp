#include "autotrain/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "autotrain/logging.h"

namespace autotrain {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto total = static_cast<int64_t>(std::llround(seconds));
  char buffer[32];
  if (total >= 3600)
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(total / 3600),
                  static_cast<long long>(total % 3600 / 60));
  else if (total >= 60)
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  else
    std::snprintf(buffer, sizeof buffer, "%llds", static_cast<long long>(total));
  return buffer;
}

std::string format_count(double value) {
  const char* suffixes[] = {"", "k", "M", "G", "T"};
  int index = 0;
  while (std::fabs(value) >= 999.5 && index < 4) {
    value /= 1000.0;
    ++index;
  }
  char buffer[32];
  int decimals = std::fabs(value) >= 99.95 ? 0 : std::fabs(value) >= 9.995 ? 1 : 2;
  if (index == 0 && value == std::floor(value)) decimals = 0;
  std::snprintf(buffer, sizeof buffer, "%.*f%s", decimals, value, suffixes[index]);
  return buffer;
}

int64_t resident_memory_bytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return pages_resident * static_cast<int64_t>(::sysconf(_SC_PAGESIZE));
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, double log_interval_seconds)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      log_interval_seconds_(log_interval_seconds),
      on_terminal_(::isatty(STDERR_FILENO) != 0 && log::info_enabled()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_ && on_terminal_ && done_ > 0) std::fputc('\n', stderr);
}

void ProgressBar::advance(int64_t amount) {
  done_ += amount;
  maybe_draw(false);
}

void ProgressBar::set_status(std::string status) { status_ = std::move(status); }

void ProgressBar::finish() {
  if (finished_) return;
  maybe_draw(true);
  if (on_terminal_) std::fputc('\n', stderr);
  finished_ = true;
}

double ProgressBar::rate_per_second() const {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
}

double ProgressBar::eta_seconds() const {
  double rate = rate_per_second();
  if (total_ <= 0 || rate <= 0) return -1;
  return static_cast<double>(std::max<int64_t>(total_ - done_, 0)) / rate;
}

std::string ProgressBar::render_line() const {
  std::string line = label_ + " ";
  if (total_ > 0) {
    const int width = 24;
    double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    int filled = static_cast<int>(fraction * width);
    line += '[';  // appended piece by piece: GCC 12 warns falsely (-Wstringop-overflow) on "[" + a temporary
    line.append(filled, '#').append(width - filled, '.') += "] ";
    char percent[16];
    std::snprintf(percent, sizeof percent, "%3.0f%% ", fraction * 100.0);
    line += percent + format_count(static_cast<double>(done_)) + "/" + format_count(static_cast<double>(total_));
  } else {
    line += format_count(static_cast<double>(done_));
  }
  line += " " + unit_ + " | " + format_count(rate_per_second()) + " " + unit_ + "/s";
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  line += " | " + format_duration(elapsed);
  if (total_ > 0) line += " < ETA " + format_duration(eta_seconds());
  line += " | rss " + format_count(static_cast<double>(resident_memory_bytes())) + "B";
  if (!status_.empty()) line += " | " + status_;
  return line;
}

void ProgressBar::maybe_draw(bool force) {
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (on_terminal_) {
    if (!force && since < 0.1) return;
    std::fprintf(stderr, "\r\033[K%s", render_line().c_str());
    std::fflush(stderr);
  } else {
    if (!force && since < log_interval_seconds_) return;
    log::info(render_line());
  }
  last_draw_ = now;
}

}  // namespace autotrain
