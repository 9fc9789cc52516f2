// pp/tg throughput of a GGUF file through llama.cpp's C API, measured the way llama.cpp's
// `llama-bench` measures it (the crate vendors llama.cpp without tools/llama-bench's source,
// so this driver stands in for it; build it against the vendored sources with build.sh).
//
//   pp_tg -m FILE [-t THREADS] [-p 512] [-n 128] [-r 5]
//
// Method, as llama-bench's defaults: a fresh context per test with n_ctx = p (pp) or n (tg),
// n_batch 2048, n_ubatch 512, f16 KV cache, flash attention "auto"; a ggml threadpool of
// THREADS threads (poll 50) attached to it; one warm-up run; then R repetitions, each on a
// cleared KV cache. pp: random tokens (BOS first where the model adds it) in decode calls of
// up to n_batch tokens, logits for the last token only. tg: N one-token decode calls, each
// synchronised, no sampling. Tokens/s is the mean over repetitions of tokens / seconds.

#include "ggml-cpu.h"
#include "ggml.h"
#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static uint64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

static bool run_pp(llama_context * ctx, int n_prompt, int n_batch) {
    const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    const int n_vocab = llama_vocab_n_tokens(vocab);
    std::vector<llama_token> buf(n_batch);
    for (int done = 0; done < n_prompt;) {
        const int n = std::min(n_prompt - done, n_batch);
        for (int i = 0; i < n; i++) {
            buf[i] = std::rand() % n_vocab;
        }
        if (done == 0 && llama_vocab_get_add_bos(vocab)) {
            buf[0] = llama_vocab_bos(vocab);
        }
        if (llama_decode(ctx, llama_batch_get_one(buf.data(), n)) != 0) {
            return false;
        }
        done += n;
    }
    llama_synchronize(ctx);
    return true;
}

static bool run_tg(llama_context * ctx, int n_gen) {
    const llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    const int n_vocab = llama_vocab_n_tokens(vocab);
    llama_token tok = llama_vocab_get_add_bos(vocab) ? llama_vocab_bos(vocab) : std::rand() % n_vocab;
    for (int i = 0; i < n_gen; i++) {
        if (llama_decode(ctx, llama_batch_get_one(&tok, 1)) != 0) {
            return false;
        }
        llama_synchronize(ctx);
        tok = std::rand() % n_vocab;
    }
    return true;
}

static void quiet(ggml_log_level, const char *, void *) {}

// One test: pp when n_prompt > 0, else tg. Prints a markdown row.
static int one_test(llama_model * model, const char * name, int threads, int n_prompt, int n_gen, int reps) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_prompt + n_gen;
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.type_k = GGML_TYPE_F16;
    cp.type_v = GGML_TYPE_F16;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    tpp.poll = 50;
    ggml_threadpool * pool = ggml_threadpool_new(&tpp);
    llama_attach_threadpool(ctx, pool, nullptr);
    llama_set_n_threads(ctx, threads, threads);

    const int n = n_prompt > 0 ? n_prompt : n_gen;
    auto once = [&]() { return n_prompt > 0 ? run_pp(ctx, n_prompt, cp.n_batch) : run_tg(ctx, n_gen); };
    llama_memory_clear(llama_get_memory(ctx), false);
    // warm-up: the whole prompt for pp, one token for tg (as llama-bench)
    if (!(n_prompt > 0 ? run_pp(ctx, n_prompt, cp.n_batch) : run_tg(ctx, 1))) {
        fprintf(stderr, "warm-up decode failed\n");
        return 1;
    }
    std::vector<double> ts;
    for (int r = 0; r < reps; r++) {
        llama_memory_clear(llama_get_memory(ctx), false);
        const uint64_t t0 = now_ns();
        if (!once()) {
            fprintf(stderr, "decode failed\n");
            return 1;
        }
        ts.push_back(1e9 * n / double(now_ns() - t0));
    }
    double mean = 0;
    for (double x : ts) {
        mean += x;
    }
    mean /= ts.size();
    double var = 0;
    for (double x : ts) {
        var += (x - mean) * (x - mean);
    }
    const double sd = ts.size() > 1 ? std::sqrt(var / (ts.size() - 1)) : 0.0;
    printf("| %s | %d | %s%d | %.2f ± %.2f |\n", name, threads, n_prompt > 0 ? "pp" : "tg", n, mean, sd);
    fflush(stdout);
    llama_free(ctx);
    ggml_threadpool_free(pool);
    return 0;
}

int main(int argc, char ** argv) {
    std::string path;
    int threads = 2, n_prompt = 512, n_gen = 128, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const int v = std::atoi(argv[i + 1]);
        if (a == "-m") {
            path = argv[i + 1];
        } else if (a == "-t") {
            threads = v;
        } else if (a == "-p") {
            n_prompt = v;
        } else if (a == "-n") {
            n_gen = v;
        } else if (a == "-r") {
            reps = v;
        } else {
            fprintf(stderr, "unknown option %s\n", a.c_str());
            return 2;
        }
    }
    if (path.empty()) {
        fprintf(stderr, "usage: %s -m FILE [-t THREADS] [-p 512] [-n 128] [-r 5]\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model * model = llama_model_load_from_file(path.c_str(), llama_model_default_params());
    if (!model) {
        fprintf(stderr, "cannot load %s\n", path.c_str());
        return 1;
    }
    const char * name = std::strrchr(path.c_str(), '/') ? std::strrchr(path.c_str(), '/') + 1 : path.c_str();
    printf("| model | threads | test | t/s |\n|---|---|---|---|\n");
    int rc = 0;
    if (n_prompt > 0) {
        rc |= one_test(model, name, threads, n_prompt, 0, reps);
    }
    if (n_gen > 0) {
        rc |= one_test(model, name, threads, 0, n_gen, reps);
    }
    llama_model_free(model);
    llama_backend_free();
    return rc;
}
