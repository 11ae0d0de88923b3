// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The autotrain authors
//
// oracle: runs ggml's reference quantizers (quantize_row_*_ref from ggml/src/ggml-quants.c) over a
// file of float32 rows and writes the quantized bytes, one file per type. It is only built at fixture
// generation time (tools/ggml_quant_fixture/make.sh), against a ggml checkout given there; no ggml
// code lives in this repository. The output is the test oracle in tests/data/ggml_quants/.
//
//   oracle INPUT.f32 ROWS COLS OUTDIR [--dequant] [--imatrix IMPORTANCE.f32]
//
// INPUT.f32 holds ROWS*COLS little-endian float32 values, row-major. For each type T in
// q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K it writes OUTDIR/T.bin: the rows quantized one at a time
// (quantize_row_T_ref(row, out, COLS)), concatenated, i.e. ROWS * (COLS/block) * bytes_per_block bytes; for iq4_nl
// and iq4_xs quantize_T(row, out, 1, COLS, NULL), what llama-quantize runs for them.
// With --dequant it also writes OUTDIR/T.deq.f32: ggml's dequantize_row_T of those bytes.
// With --imatrix it also writes OUTDIR/T.imatrix.bin: each row quantized by quantize_T(row, out, 1, COLS, qw)
// with qw the same row of IMPORTANCE.f32 (ROWS*COLS float32): ggml's importance-matrix path
// (quantize_row_T_impl; q8_0 ignores the weights), what llama-quantize --imatrix runs.
// It prints one line per type: bytes written and the largest per-row relative RMSE of ggml's own
// dequantization (a sanity check only).
//
// Build (see make.sh): gcc -std=gnu11 -O2 -ffp-contract=off -I$GGML/include -I$GGML/src
//                      oracle.c ggml_stubs.c $GGML/src/ggml-quants.c -lm

#include "ggml-quants.h"  // from the ggml checkout: declares quantize_row_*_ref, dequantize_row_*, block_* types

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*quantize_fn)(const float * x, void * y, int64_t k);
typedef void (*dequantize_fn)(const void * x, float * y, int64_t k);
typedef size_t (*quantize_weighted_fn)(const float * src, void * dst, int64_t nrow, int64_t n_per_row,
                                       const float * quant_weights);

struct qtype {
    const char *  name;
    int           block_size;      // weights per block
    size_t        bytes_per_block; // sizeof(block_*)
    size_t        expected_bytes;  // the size the GGUF format fixes; checked against sizeof
    quantize_fn   quantize;
    dequantize_fn dequantize;
    quantize_weighted_fn quantize_weighted;
};

// Wrappers with one signature, so the table below needs no function-pointer casts.
#define WRAP(name)                                                                  \
    static void q_##name(const float * x, void * y, int64_t k) {                    \
        quantize_row_##name##_ref(x, (block_##name *) y, k);                        \
    }                                                                               \
    static void dq_##name(const void * x, float * y, int64_t k) {                   \
        dequantize_row_##name((const block_##name *) x, y, k);                      \
    }
WRAP(q4_0) WRAP(q4_1) WRAP(q5_0) WRAP(q5_1) WRAP(q8_0) WRAP(q2_K) WRAP(q3_K) WRAP(q4_K) WRAP(q5_K) WRAP(q6_K)

// iq4_nl / iq4_xs: llama-quantize runs quantize_<type> (ntry 7) with or without an importance matrix, never
// quantize_row_iq4_nl_ref (ntry -1): the .bin files are quantize_<type> without one.
#define WRAP_IQ(name)                                                               \
    static void q_##name(const float * x, void * y, int64_t k) {                    \
        quantize_##name(x, y, 1, k, NULL);                                          \
    }                                                                               \
    static void dq_##name(const void * x, float * y, int64_t k) {                   \
        dequantize_row_##name((const block_##name *) x, y, k);                      \
    }
WRAP_IQ(iq4_nl) WRAP_IQ(iq4_xs)

#define QT(name, qk, expect) { #name, (qk), sizeof(block_##name), (expect), q_##name, dq_##name, quantize_##name }

static const struct qtype QTYPES[] = {
    QT(q4_0, QK4_0,  18),
    QT(q4_1, QK4_1,  20),
    QT(q5_0, QK5_0,  22),
    QT(q5_1, QK5_1,  24),
    QT(q8_0, QK8_0,  34),
    QT(q2_K, QK_K,   84),
    QT(q3_K, QK_K,  110),
    QT(q4_K, QK_K,  144),
    QT(q5_K, QK_K,  176),
    QT(q6_K, QK_K,  210),
    QT(iq4_nl, QK4_NL, 18),
    QT(iq4_xs, QK_K, 136),
};

static void die(const char * fmt, const char * arg) {
    fprintf(stderr, "oracle: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static float * read_floats(const char * path, size_t n) {
    float * x = malloc(n * sizeof(float));
    if (!x) die("%s", "out of memory");
    FILE * f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    if (fread(x, sizeof(float), n, f) != n) die("%s is shorter than ROWS*COLS float32 values", path);
    if (fgetc(f) != EOF) die("%s is longer than ROWS*COLS float32 values", path);
    fclose(f);
    for (size_t i = 0; i < n; ++i) {
        if (!isfinite(x[i])) die("%s holds a non-finite value", path);
    }
    return x;
}

static long parse_positive(const char * s) {
    char * end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v <= 0) die("not a positive integer: %s", s);
    return v;
}

static void write_file(const char * dir, const char * name, const char * suffix, const void * data, size_t n) {
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s%s", dir, name, suffix) >= (int) sizeof(path)) die("path too long: %s", dir);
    FILE * f = fopen(path, "wb");
    if (!f) die("cannot open %s for writing", path);
    if (fwrite(data, 1, n, f) != n || fclose(f) != 0) die("cannot write %s", path);
}

int main(int argc, char ** argv) {
    const char * importance_path = NULL;
    int dequant = 0;
    int bad_args = argc < 5;
    for (int i = 5; i < argc && !bad_args; ++i) {
        if (strcmp(argv[i], "--dequant") == 0) {
            dequant = 1;
        } else if (strcmp(argv[i], "--imatrix") == 0 && i + 1 < argc) {
            importance_path = argv[++i];
        } else {
            bad_args = 1;
        }
    }
    if (bad_args) {
        fprintf(stderr, "usage: %s INPUT.f32 ROWS COLS OUTDIR [--dequant] [--imatrix IMPORTANCE.f32]\n", argv[0]);
        return 2;
    }
    const uint32_t probe = 1;
    if (*(const uint8_t *) &probe != 1) die("%s", "this oracle assumes a little-endian host");

    const char * input  = argv[1];
    const long   rows   = parse_positive(argv[2]);
    const long   cols   = parse_positive(argv[3]);
    const char * outdir = argv[4];

    const size_t n = (size_t) rows * (size_t) cols;
    float * x = read_floats(input, n);
    float * importance = importance_path ? read_floats(importance_path, n) : NULL;

    float * y = malloc((size_t) cols * sizeof(float));
    float * deq = dequant ? malloc(n * sizeof(float)) : NULL;
    if (!y || (dequant && !deq)) die("%s", "out of memory");

    for (size_t t = 0; t < sizeof(QTYPES) / sizeof(QTYPES[0]); ++t) {
        const struct qtype * q = &QTYPES[t];
        if (q->bytes_per_block != q->expected_bytes) die("unexpected sizeof(block_%s)", q->name);
        if (cols % q->block_size != 0) die("COLS is not a multiple of the block size of %s", q->name);

        const size_t row_bytes = (size_t) (cols / q->block_size) * q->bytes_per_block;
        uint8_t * out = calloc((size_t) rows, row_bytes);
        if (!out) die("%s", "out of memory");

        double worst_rel_rmse = 0.0;
        long   worst_row      = -1;
        for (long r = 0; r < rows; ++r) {
            const float * xr = x + (size_t) r * cols;
            uint8_t *     qr = out + (size_t) r * row_bytes;
            q->quantize(xr, qr, cols);

            q->dequantize(qr, y, cols);
            double se = 0.0, ss = 0.0;
            for (long i = 0; i < cols; ++i) {
                const double d = (double) y[i] - (double) xr[i];
                se += d * d;
                ss += (double) xr[i] * (double) xr[i];
            }
            if (ss > 0.0 && sqrt(se / ss) > worst_rel_rmse) {
                worst_rel_rmse = sqrt(se / ss);
                worst_row      = r;
            }
            if (dequant) memcpy(deq + (size_t) r * cols, y, (size_t) cols * sizeof(float));
        }

        write_file(outdir, q->name, ".bin", out, (size_t) rows * row_bytes);
        if (importance) {
            memset(out, 0, (size_t) rows * row_bytes);
            for (long r = 0; r < rows; ++r) {
                const size_t written = q->quantize_weighted(x + (size_t) r * cols, out + (size_t) r * row_bytes, 1,
                                                            cols, importance + (size_t) r * cols);
                if (written != row_bytes) die("quantize_%s wrote an unexpected size", q->name);
            }
            write_file(outdir, q->name, ".imatrix.bin", out, (size_t) rows * row_bytes);
        }
        if (dequant) write_file(outdir, q->name, ".deq.f32", deq, n * sizeof(float));
        printf("%-5s block %3d  %3zu bytes/block  %7zu bytes  worst row rel. RMSE (ggml dequant) %.6g (row %ld)\n",
               q->name, q->block_size, q->bytes_per_block, (size_t) rows * row_bytes, worst_rel_rmse, worst_row);
        free(out);
    }

    free(deq);
    free(y);
    free(importance);
    free(x);
    return 0;
}
