// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The autotrain authors
//
// The four symbols ggml-quants.c references from the rest of ggml (ggml.c), so that the oracle can
// link ggml-quants.c alone. ggml_row_size answers for the twelve types the oracle quantizes (quantize_<type>, the
// importance-matrix path, asks it for the row stride), as ggml.c does: bytes per block times blocks per row.
// The others are not reached from the functions the oracle calls (ggml_abort only on a failed GGML_ASSERT,
// the rest from ggml_validate_row_data) and abort instead of answering.

#include "ggml.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void ggml_abort(const char * file, int line, const char * fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "%s:%d: ", file, line);
    va_list args;
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n");
    abort();
}

static void unexpected(const char * fn) {
    fprintf(stderr, "oracle: ggml_stubs.c: %s() was called; the oracle does not support it\n", fn);
    abort();
}

size_t ggml_type_size(enum ggml_type type) {
    (void) type;
    unexpected("ggml_type_size");
    return 0;
}

size_t ggml_row_size(enum ggml_type type, int64_t ne) {
    size_t block = 0, bytes = 0;
    switch (type) {
        case GGML_TYPE_Q4_0: block = 32;  bytes = 18;  break;
        case GGML_TYPE_Q4_1: block = 32;  bytes = 20;  break;
        case GGML_TYPE_Q5_0: block = 32;  bytes = 22;  break;
        case GGML_TYPE_Q5_1: block = 32;  bytes = 24;  break;
        case GGML_TYPE_Q8_0: block = 32;  bytes = 34;  break;
        case GGML_TYPE_Q2_K: block = 256; bytes = 84;  break;
        case GGML_TYPE_Q3_K: block = 256; bytes = 110; break;
        case GGML_TYPE_Q4_K: block = 256; bytes = 144; break;
        case GGML_TYPE_Q5_K: block = 256; bytes = 176; break;
        case GGML_TYPE_Q6_K: block = 256; bytes = 210; break;
        case GGML_TYPE_IQ4_NL: block = 32; bytes = 18; break;
        case GGML_TYPE_IQ4_XS: block = 256; bytes = 136; break;
        default: unexpected("ggml_row_size (another type)");
    }
    if (ne % (int64_t) block != 0) unexpected("ggml_row_size (a partial block)");
    return bytes * (size_t) (ne / (int64_t) block);
}

const char * ggml_type_name(enum ggml_type type) {
    (void) type;
    unexpected("ggml_type_name");
    return NULL;
}
