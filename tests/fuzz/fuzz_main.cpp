// libFuzzer's entry point for one target, chosen at compile time (AUTOTRAIN_FUZZ_TARGET).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return autotrain::fuzz::AUTOTRAIN_FUZZ_TARGET(data, size);
}
