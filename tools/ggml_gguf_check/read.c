// SPDX-License-Identifier: MIT
// Copyright (c) 2026 The autotrain authors
//
// read: opens a GGUF file with ggml's own reader (gguf_init_from_file in ggml/src/gguf.cpp, the parser llama.cpp
// loads models and LoRA adapters with) and writes what it sees: every metadata key with its GGUF type, and every
// tensor's name, ggml type and shape, with its values as ggml dequantizes them (the type's to_float). Built by
// run.sh against a ggml checkout; no ggml code lives in this repository.
//
//   read FILE.gguf OUTDIR      -> OUTDIR/index.json, OUTDIR/<i>.f32 (tensor i as float32)
#include "ggml.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char * what, const char * arg) {
    fprintf(stderr, "read: %s %s\n", what, arg);
    exit(1);
}

// A JSON string of `s` (the names here are ASCII; anything else is escaped byte by byte).
static void put_json_string(FILE * f, const char * s) {
    fputc('"', f);
    for (const unsigned char * p = (const unsigned char *) s; *p; ++p) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE.gguf OUTDIR\n", argv[0]);
        return 2;
    }
    struct ggml_context * ctx = NULL;
    struct gguf_init_params params = { /*no_alloc =*/ false, /*ctx =*/ &ctx };
    struct gguf_context * gguf = gguf_init_from_file(argv[1], params);
    if (!gguf) die("ggml's gguf_init_from_file refused", argv[1]);

    char path[4096];
    snprintf(path, sizeof(path), "%s/index.json", argv[2]);
    FILE * index = fopen(path, "w");
    if (!index) die("cannot write", path);
    fprintf(index, "{\"version\": %u, \"alignment\": %zu, \"data_offset\": %zu, \"keys\": [",
            gguf_get_version(gguf), gguf_get_alignment(gguf), gguf_get_data_offset(gguf));
    for (int64_t i = 0; i < gguf_get_n_kv(gguf); ++i) {
        fprintf(index, "%s[", i ? ", " : "");
        put_json_string(index, gguf_get_key(gguf, i));
        fprintf(index, ", \"%s\"", gguf_type_name(gguf_get_kv_type(gguf, i)));
        if (gguf_get_kv_type(gguf, i) == GGUF_TYPE_ARRAY) {
            fprintf(index, ", \"%s\", %zu", gguf_type_name(gguf_get_arr_type(gguf, i)), gguf_get_arr_n(gguf, i));
        }
        fprintf(index, "]");
    }
    fprintf(index, "], \"tensors\": [");
    for (int64_t i = 0; i < gguf_get_n_tensors(gguf); ++i) {
        const char * name = gguf_get_tensor_name(gguf, i);
        struct ggml_tensor * t = ggml_get_tensor(ctx, name);
        if (!t) die("no tensor in the context:", name);
        const int64_t n = ggml_nelements(t);
        float * values = malloc((size_t) n * sizeof(float));
        if (!values) die("out of memory for", name);
        if (t->type == GGML_TYPE_F32) {
            memcpy(values, t->data, (size_t) n * sizeof(float));
        } else {
            const struct ggml_type_traits * traits = ggml_get_type_traits(t->type);
            if (!traits->to_float) die("ggml has no to_float for the type of", name);
            traits->to_float(t->data, values, n);
        }
        snprintf(path, sizeof(path), "%s/%lld.f32", argv[2], (long long) i);
        FILE * out = fopen(path, "wb");
        if (!out || fwrite(values, sizeof(float), (size_t) n, out) != (size_t) n || fclose(out) != 0) die("cannot write", path);
        free(values);
        fprintf(index, "%s{\"name\": ", i ? ", " : "");
        put_json_string(index, name);
        fprintf(index, ", \"type\": \"%s\", \"offset\": %zu, \"size\": %zu, \"ne\": [%lld, %lld, %lld, %lld]}",
                ggml_type_name(t->type), gguf_get_tensor_offset(gguf, i), gguf_get_tensor_size(gguf, i),
                (long long) t->ne[0], (long long) t->ne[1], (long long) t->ne[2], (long long) t->ne[3]);
    }
    fprintf(index, "]}\n");
    if (fclose(index) != 0) die("cannot write", path);
    gguf_free(gguf);
    ggml_free(ctx);
    return 0;
}
