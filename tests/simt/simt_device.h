// Device code's vocabulary (qualifiers, built-in variables, intrinsics) as plain C++ over the emulator of simt.h,
// for a translation unit that includes a kernel file next (tests/simt/emulated_*.cpp). The CUDA headers define some
// of these for nvcc; from here on the kernel source sees these.
#pragma once

#include "simt.h"

#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __launch_bounds__
#undef __grid_constant__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)
#define __grid_constant__

#define threadIdx (::autotrain::simt::thread_index())
#define blockIdx (::autotrain::simt::block_index())
#define blockDim (::autotrain::simt::block_dim())
#define gridDim (::autotrain::simt::grid_dim())
#define __syncthreads() ::autotrain::simt::sync_block()
#define __syncwarp(...) ::autotrain::simt::sync_warp()
#define __shfl_xor_sync(mask, value, lane_mask) ::autotrain::simt::shuffle_xor(value, lane_mask)
#define __shfl_sync(mask, value, source_lane) ::autotrain::simt::shuffle(value, source_lane)
#define __byte_perm ::autotrain::simt::byte_perm
#define __fmul_rn ::autotrain::simt::mul_rn
#define __fadd_rn ::autotrain::simt::add_rn
#define __fdiv_rn ::autotrain::simt::div_rn
#define rsqrtf ::autotrain::simt::reciprocal_sqrt
#define __ffs ::autotrain::simt::find_first_set
#define __ldg ::autotrain::simt::load_global
#define __uint_as_float ::autotrain::simt::uint_as_float
#define __trap() ::autotrain::simt::fail("__trap()")

namespace autotrain::cuda {
using std::max;
using std::min;
}  // namespace autotrain::cuda
