// A progress bar for long work: done/total, rate, ETA and a free-form status (loss, memory, ...).
// On a terminal it redraws one line at most ten times a second; elsewhere (CI, a log file) it logs a
// line through spdlog every `log_interval_seconds`.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace autotrain {

// "1h02m", "3m05s", "42s"; "?" for a negative or non-finite value.
std::string format_duration(double seconds);
// "12.3k", "4.56M": a count with an SI suffix and three significant digits.
std::string format_count(double value);
// Resident set size of this process in bytes (0 where /proc is unavailable).
int64_t resident_memory_bytes();

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit, double log_interval_seconds = 10.0);
  ~ProgressBar();

  void advance(int64_t amount = 1);
  void set_status(std::string status);  // shown after the rate, e.g. "loss 2.31 | mem 11.2 GB"
  void finish();

  int64_t done() const { return done_; }
  double rate_per_second() const;   // over the whole run so far
  double eta_seconds() const;       // -1 when unknown
  std::string render_line() const;  // the line as it would be drawn now

 private:
  void maybe_draw(bool force);

  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  double log_interval_seconds_;
  bool on_terminal_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace autotrain
