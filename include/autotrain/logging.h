// Logging through spdlog to stderr: one place sets the format and the level.
// The wrapper keeps spdlog (built on Debian's fmt 9) out of translation units that include libtorch,
// whose headers carry their own, newer fmt: the two cannot meet in one translation unit.
#pragma once

#include <sstream>
#include <string>

namespace autotrain::log {

// Level names: trace, debug, info, warn, error, critical, off. Throws Error (exit 2) on another name.
void init(const std::string& level);

void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);
bool debug_enabled();
bool info_enabled();
// Shows warnings and errors only, unless the level is already higher (the workers of a distributed job
// other than rank 0 log only what goes wrong).
void quiet_to_warnings();

// Concatenates anything that has operator<<: log::info(log::cat("step ", step, " loss ", loss)).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace autotrain::log
