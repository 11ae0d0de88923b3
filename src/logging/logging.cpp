// Built in its own target, without libtorch's include path (see logging.h).
#include "autotrain/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "autotrain/error.h"

namespace autotrain::log {

void init(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  // from_str() answers "off" for names it does not know; only "off" itself may mean off.
  if (parsed == spdlog::level::off && level != "off")
    throw config_error("--log-level " + level + ": expected trace, debug, info, warn, error, critical or off");
  auto logger = spdlog::get("autotrain");
  if (!logger) logger = spdlog::stderr_color_mt("autotrain");
  logger->set_pattern("[%H:%M:%S] %^%l%$ %v");
  logger->set_level(parsed);
  spdlog::set_default_logger(logger);
}

void debug(const std::string& message) { spdlog::debug("{}", message); }
void info(const std::string& message) { spdlog::info("{}", message); }
void warn(const std::string& message) { spdlog::warn("{}", message); }
void error(const std::string& message) { spdlog::error("{}", message); }
bool debug_enabled() { return spdlog::should_log(spdlog::level::debug); }
bool info_enabled() { return spdlog::should_log(spdlog::level::info); }

void quiet_to_warnings() {
  if (spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
}

}  // namespace autotrain::log
