// kernels/fused_ops.cu compiled as C++ for the CPU emulator: simt_device.h must come first, so that the kernel
// source sees the emulator's device vocabulary.
#include "simt_device.h"

#include "fused_ops.cu"
