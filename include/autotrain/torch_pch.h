// Precompiled header: the libtorch include every translation unit pays for once.
#pragma once
#include <torch/torch.h>
