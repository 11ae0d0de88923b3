// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The autotrain authors
//
// The four symbols ggml-quants.c references from the rest of ggml (ggml.c), so that the oracle can
// link ggml-quants.c alone. None of them is reached from the quantize_row_*_ref / dequantize_row_*
// functions the oracle calls: ggml_abort only on a failed GGML_ASSERT, the other three only from
// quantize_chunk-style helpers (quantize_q*_K with importance weights, ggml_validate_row_data).
// They therefore abort instead of answering.

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
    (void) type; (void) ne;
    unexpected("ggml_row_size");
    return 0;
}

const char * ggml_type_name(enum ggml_type type) {
    (void) type;
    unexpected("ggml_type_name");
    return NULL;
}
