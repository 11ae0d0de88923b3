// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The autotrain authors
//
// time: seconds of ggml's reference quantizers (quantize_row_<type>_ref, what llama-quantize runs without an
// importance matrix) over a float32 matrix, row by row on one thread, best of 3: the peer of
// `bench_quantize --ggml` in tools/bench_ggml_quants.sh. Built there against a ggml checkout, like oracle.c.
// With IMPORTANCE.f32 (COLS float32: one importance-matrix entry for every row), also quantize_<type> with it
// (quantize_row_<type>_impl, llama-quantize --imatrix), printed as "<type>+imatrix".
//
//   time INPUT.f32 ROWS COLS [IMPORTANCE.f32]

#include "ggml-quants.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*quantize_fn)(const float * x, void * y, int64_t k);
typedef size_t (*weighted_fn)(const float * src, void * dst, int64_t nrow, int64_t n_per_row, const float * qw);

#define WRAP(name) \
    static void q_##name(const float * x, void * y, int64_t k) { quantize_row_##name##_ref(x, (block_##name *) y, k); }
WRAP(q4_0) WRAP(q8_0) WRAP(q2_K) WRAP(q3_K) WRAP(q4_K) WRAP(q5_K) WRAP(q6_K)
// iq4_nl / iq4_xs: quantize_<type> without weights, what llama-quantize runs for them
#define WRAP_IQ(name) \
    static void q_##name(const float * x, void * y, int64_t k) { quantize_##name(x, y, 1, k, NULL); }
WRAP_IQ(iq4_nl) WRAP_IQ(iq4_xs)

static const struct {
    const char * name;
    int block;
    size_t bytes;
    quantize_fn quantize;
    weighted_fn weighted;
} TYPES[] = {
    {"q4_0", QK4_0, sizeof(block_q4_0), q_q4_0, quantize_q4_0}, {"q8_0", QK8_0, sizeof(block_q8_0), q_q8_0, NULL},
    {"q2_K", QK_K, sizeof(block_q2_K), q_q2_K, quantize_q2_K},
    {"q3_K", QK_K, sizeof(block_q3_K), q_q3_K, quantize_q3_K},
    {"q4_K", QK_K, sizeof(block_q4_K), q_q4_K, quantize_q4_K},
    {"q5_K", QK_K, sizeof(block_q5_K), q_q5_K, quantize_q5_K},
    {"q6_K", QK_K, sizeof(block_q6_K), q_q6_K, quantize_q6_K},
    {"iq4_nl", QK4_NL, sizeof(block_iq4_nl), q_iq4_nl, quantize_iq4_nl},
    {"iq4_xs", QK_K, sizeof(block_iq4_xs), q_iq4_xs, quantize_iq4_xs},
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + 1e-9 * (double) t.tv_nsec;
}

int main(int argc, char ** argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s INPUT.f32 ROWS COLS [IMPORTANCE.f32]\n", argv[0]);
        return 2;
    }
    const long rows = atol(argv[2]), cols = atol(argv[3]);
    const size_t n = (size_t) rows * (size_t) cols;
    float * x = malloc(n * sizeof(float));
    FILE * f = fopen(argv[1], "rb");
    if (!x || !f || fread(x, sizeof(float), n, f) != n) {
        fprintf(stderr, "time: cannot read %ld x %ld float32 from %s\n", rows, cols, argv[1]);
        return 1;
    }
    fclose(f);
    float * qw = NULL;
    if (argc == 5) {
        qw = malloc((size_t) cols * sizeof(float));
        FILE * g = fopen(argv[4], "rb");
        if (!qw || !g || fread(qw, sizeof(float), (size_t) cols, g) != (size_t) cols) {
            fprintf(stderr, "time: cannot read %ld float32 from %s\n", cols, argv[4]);
            return 1;
        }
        fclose(g);
    }
    for (size_t t = 0; t < sizeof(TYPES) / sizeof(TYPES[0]); ++t) {
        const size_t row_bytes = (size_t) (cols / TYPES[t].block) * TYPES[t].bytes;
        uint8_t * out = malloc((size_t) rows * row_bytes);
        double best = 1e30;
        for (int i = 0; i < 3; ++i) {
            const double start = now();
            for (long r = 0; r < rows; ++r) TYPES[t].quantize(x + (size_t) r * cols, out + (size_t) r * row_bytes, cols);
            const double seconds = now() - start;
            if (seconds < best) best = seconds;
        }
        printf("ggml %s threads 1: %.4f s, %.1f M values/s\n", TYPES[t].name, best, (double) n / best / 1e6);
        if (qw && TYPES[t].weighted) {
            best = 1e30;
            for (int i = 0; i < 3; ++i) {
                const double start = now();
                for (long r = 0; r < rows; ++r)
                    TYPES[t].weighted(x + (size_t) r * cols, out + (size_t) r * row_bytes, 1, cols, qw);
                const double seconds = now() - start;
                if (seconds < best) best = seconds;
            }
            printf("ggml %s+imatrix threads 1: %.4f s, %.1f M values/s\n", TYPES[t].name, best,
                   (double) n / best / 1e6);
        }
        free(out);
    }
    free(qw);
    free(x);
    return 0;
}
