// The one exception type of autotrain. Its message names the file/key/tensor and says what to do;
// the CLI prints it as one line and exits with its exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace autotrain {

enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,  // bad data or model files, I/O failure, out of memory, ...
  kExitUsage = 2,    // bad command line or bad training_params.json
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, int exit_code = kExitRuntime)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// A configuration or usage error (exit code 2).
inline Error config_error(const std::string& message) { return Error(message, kExitUsage); }

}  // namespace autotrain
