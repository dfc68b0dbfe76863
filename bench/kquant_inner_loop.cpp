// A micro-benchmark of the 8-token K-quant GEMM's inner loop (gemm_avx512.cpp, direct_k /
// subblock_sums): per 32-element sub-block of 16 rows, 8 activation broadcasts and 8
// vpdpbusd for each of 8 tokens, with and without the per-token vpmulld by the sub-block
// scale and the weights' unpacking, to see which of them costs the time
// (docs/PERFORMANCE.md, "Batches and attention at depth (2026-12-06 evening)"). Not part of
// the build; AVX-512 VNNI only. GMAC/s on one core, best of 20 (1 GMAC = 1e9 multiply-adds
// counted as 8 vpdpbusd per sub-block and token, whatever else runs):
//
//   g++ -O2 -march=icelake-server -mtune=znver3 -o /tmp/kquant_inner_loop
//   bench/kquant_inner_loop.cpp /tmp/kquant_inner_loop
// GCC 12 flags the intrinsics' own _mm512_undefined_* self-initialization once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {
inline int32_t ld32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
alignas(64) uint8_t act[8][4096];
alignas(64) uint8_t wts[64 * 1024];
// isum + sc * (one token's sum over a sub-block's 8 dword vectors w[k] times its activation
// dwords at y, broadcast), in two chains as the kernel does.
[[gnu::always_inline]] inline __m512i token_sum(__m512i isum, const __m512i* w, const uint8_t* y,
                                                __m512i sc) {
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k += 2) {
        s0 = _mm512_dpbusd_epi32(s0, w[k], _mm512_set1_epi32(ld32(y + 4 * k)));
        s1 = _mm512_dpbusd_epi32(s1, w[k + 1], _mm512_set1_epi32(ld32(y + 4 * k + 4)));
    }
    return _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
}
// GMAC/s of run(iters) for 2000 iterations of 64 sub-blocks x 8 tokens x 8 vpdpbusd of 64
// multiply-adds each, best of 20 after a warm-up (run is noinline and stores its sums, so
// nothing is optimized away).
template <class Run>
void report(const char* name, Run run) {
    run(100);
    double best = 1e9;
    for (int r = 0; r < 20; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        run(2000);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s < best) best = s;
    }
    printf("%-40s %.1f GMAC/s\n", name, 2000.0 * 64 * 8 * 8 * 64 / best / 1e9);
}
namespace weights_in_l1 {
template <int V>
__attribute__((noinline)) void run(int iters, __m512i* out) {
    __m512i isum[8];
    for (int t = 0; t < 8; ++t) isum[t] = _mm512_setzero_si512();
    __m512i sc = _mm512_set1_epi32(3);
    for (int it = 0; it < iters; ++it) {
        for (int j = 0; j < 64; ++j) {
            __m512i w[8];
            if (V == 4) {
                const uint8_t* p = wts + (j % 16) * 512;
                for (int k = 0; k < 8; ++k) {
                    __m512i T = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(p + 32 * k))),
                        _mm256_loadu_si256((const __m256i*)(p + 32 * k + 4096)), 1);
                    w[k] = _mm512_and_si512(T, _mm512_set1_epi8(15));
                }
            } else if (V == 5) {
                const uint8_t* p = wts + (j % 16) * 512;
                for (int k = 0; k < 8; ++k) {
                    __m512i T = _mm512_loadu_si512(p + 64 * k);
                    w[k] =
                        _mm512_and_si512(_mm512_srli_epi16(T, 4 * (j & 1)), _mm512_set1_epi8(15));
                }
            } else if (V == 6) {
                const uint8_t* p = wts + (j % 16) * 512;
                for (int k = 0; k < 8; ++k) {
                    __m512i T = _mm512_loadu_si512(p + 64 * k);
                    w[k] = _mm512_and_si512(T, _mm512_set1_epi8(15));
                }
            } else if (V >= 3) {
                const uint8_t* p = wts + (j % 16) * 512;
                for (int k = 0; k < 8; ++k) {
                    __m512i T = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(p + 32 * k))),
                        _mm256_loadu_si256((const __m256i*)(p + 32 * k + 4096)), 1);
                    w[k] =
                        _mm512_and_si512(_mm512_srli_epi16(T, 4 * (j & 1)), _mm512_set1_epi8(15));
                }
            } else {
                for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(wts + 64 * k + (j % 4) * 512);
            }
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                const uint8_t* y = act[t] + (j % 32) * 32 * 4;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int k = 0; k < 8; k += 2) {
                    s0 = _mm512_dpbusd_epi32(s0, w[k], _mm512_set1_epi32(ld32(y + 4 * k)));
                    s1 = _mm512_dpbusd_epi32(s1, w[k + 1], _mm512_set1_epi32(ld32(y + 4 * k + 4)));
                }
                if (V >= 2)
                    isum[t] =
                        _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
                else if (V == 1)
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(s0, s1));
                else
                    isum[t] = _mm512_dpbusd_epi32(isum[t], s0, s1);
            }
        }
    }
    for (int t = 0; t < 8; ++t) out[t] = isum[t];
}
template <int V>
void bench(const char* name) {
    __m512i out[8];
    report(name, [&](int iters) { run<V>(iters, out); });
}
void run_all() {
    bench<1>("bcast+8dpbusd+add");
    bench<2>("+mulld");
    bench<3>("+unpack q4k sub");
    bench<4>("+unpack insert, no shift");
    bench<5>("+unpack zmm load, var shift");
    bench<6>("+unpack zmm load, and only");
}

}  // namespace weights_in_l1
namespace unpack_spread {
static inline void unpack(int j, __m512i* w, int V) {
    const uint8_t* p = wts + (j % 16) * 512;
    for (int k = 0; k < 8; ++k) {
        __m512i T;
        if (V == 0)
            T = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(p + 32 * k))),
                _mm256_loadu_si256((const __m256i*)(p + 32 * k + 4096)), 1);
        else
            T = _mm512_loadu_si512(p + 64 * k);
        w[k] = _mm512_and_si512(_mm512_srli_epi16(T, 4 * (j & 1)), _mm512_set1_epi8(15));
    }
}
template <int V, int MODE>
__attribute__((noinline)) void run(int iters, __m512i* out) {
    __m512i isum[8];
    for (int t = 0; t < 8; ++t) isum[t] = _mm512_setzero_si512();
    __m512i sc = _mm512_set1_epi32(3);
    for (int it = 0; it < iters; ++it) {
        __m512i w[8], wn[8];
        unpack(0, w, V);
        for (int j = 0; j < 64; ++j) {
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                if (MODE == 1 && t == 2) unpack(j + 1, wn, V);
                if (MODE == 2) {  // one unpack vector per token
                    const uint8_t* p = wts + ((j + 1) % 16) * 512;
                    int k = t;
                    __m512i T =
                        V == 0 ? _mm512_inserti64x4(
                                     _mm512_castsi256_si512(
                                         _mm256_loadu_si256((const __m256i*)(p + 32 * k))),
                                     _mm256_loadu_si256((const __m256i*)(p + 32 * k + 4096)), 1)
                               : _mm512_loadu_si512(p + 64 * k);
                    wn[k] = _mm512_and_si512(_mm512_srli_epi16(T, 4 * ((j + 1) & 1)),
                                             _mm512_set1_epi8(15));
                }
                const uint8_t* y = act[t] + (j % 32) * 32 * 4;
                isum[t] = token_sum(isum[t], w, y, sc);
            }
            if (MODE == 0)
                unpack(j + 1, w, V);
            else
                for (int k = 0; k < 8; ++k) w[k] = wn[k];
        }
    }
    for (int t = 0; t < 8; ++t) out[t] = isum[t];
}
template <int V, int M>
void bench(const char* name) {
    __m512i out[8];
    report(name, [&](int iters) { run<V, M>(iters, out); });
}
void run_all() {
    bench<0, 0>("insert: unpack at end");
    bench<0, 1>("insert: unpack next after token 2");
    bench<0, 2>("insert: one vector per token");
    bench<1, 0>("zmm: unpack at end");
    bench<1, 1>("zmm: unpack next after token 2");
    bench<1, 2>("zmm: one vector per token");
}

}  // namespace unpack_spread
namespace nibble_pairs {
static inline __m512i both(const uint8_t* p) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(p))),
                              _mm256_loadu_si256((const __m256i*)(p + 4096)), 1);
}
// V0: current (sub per j, variable shift). V1: pairs of sub-blocks sharing loads.
template <int V>
__attribute__((noinline)) void run(int iters, __m512i* out, float* fo) {
    __m512i isum[8];
    for (int t = 0; t < 8; ++t) isum[t] = _mm512_setzero_si512();
    __m512 f[8];
    for (int t = 0; t < 8; ++t) f[t] = _mm512_setzero_ps();
    __m512i sc = _mm512_set1_epi32(3), sc2 = _mm512_set1_epi32(5);
    for (int it = 0; it < iters; ++it) {
        if (V == 0) {
#pragma GCC unroll 1
            for (int j = 0; j < 64; ++j) {
                __m512i w[8];
                const uint8_t* p = wts + ((j >> 1) % 16) * 512;
                const __m128i shift = _mm_cvtsi32_si128(4 * (j & 1));
                for (int k = 0; k < 8; ++k)
                    w[k] = _mm512_and_si512(_mm512_srl_epi16(both(p + 32 * k), shift),
                                            _mm512_set1_epi8(15));
#pragma GCC unroll 8
                for (int t = 0; t < 8; ++t) {
                    const uint8_t* y = act[t] + (j % 32) * 32 * 4;
                    isum[t] = token_sum(isum[t], w, y, sc);
                }
                if ((j & 7) == 7)
                    for (int t = 0; t < 8; ++t) {
                        f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(1.0f),
                                               f[t]);
                        isum[t] = _mm512_setzero_si512();
                    }
            }
        } else {
#pragma GCC unroll 1
            for (int j = 0; j < 64; j += 2) {
                __m512i wl[8], wh[8];
                const uint8_t* p = wts + ((j >> 1) % 16) * 512;
                for (int k = 0; k < 8; ++k) {
                    __m512i T = both(p + 32 * k);
                    wl[k] = _mm512_and_si512(T, _mm512_set1_epi8(15));
                    wh[k] = _mm512_and_si512(_mm512_srli_epi16(T, 4), _mm512_set1_epi8(15));
                }
#pragma GCC unroll 8
                for (int t = 0; t < 8; ++t) {
                    const uint8_t* y = act[t] + (j % 32) * 32 * 4;
                    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
                    for (int k = 0; k < 8; ++k) {
                        s0 = _mm512_dpbusd_epi32(s0, wl[k], _mm512_set1_epi32(ld32(y + 4 * k)));
                        s1 =
                            _mm512_dpbusd_epi32(s1, wh[k], _mm512_set1_epi32(ld32(y + 32 + 4 * k)));
                    }
                    isum[t] = _mm512_add_epi32(
                        isum[t],
                        _mm512_add_epi32(_mm512_mullo_epi32(s0, sc), _mm512_mullo_epi32(s1, sc2)));
                }
                if ((j & 7) == 6)
                    for (int t = 0; t < 8; ++t) {
                        f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(1.0f),
                                               f[t]);
                        isum[t] = _mm512_setzero_si512();
                    }
            }
        }
    }
    for (int t = 0; t < 8; ++t) {
        out[t] = isum[t];
        _mm512_storeu_ps(fo + 16 * t, f[t]);
    }
}
template <int V>
void bench(const char* name) {
    __m512i out[8];
    float fo[128];
    report(name, [&](int iters) { run<V>(iters, out, fo); });
}
void run_all() {
    bench<0>("current sub per j");
    bench<1>("sub-block pairs share loads");
}

}  // namespace nibble_pairs
}  // namespace

// Whether the unpack's cost is its results feeding the dot products or just its vector ops:
// the same loop with the weights loaded as they are, then with an `and` each (what Q4_K's
// low nibbles need), then with an `and` and an `xor` whose results nothing but a dummy
// uses. A run-time scale (set1 of 3 folds the multiply into a shift and an add).
namespace dead_ops {
template <int V>
__attribute__((noinline)) void run(int iters, __m512i* out, __m512i sc) {
    __m512i isum[8];
    for (int t = 0; t < 8; ++t) isum[t] = _mm512_setzero_si512();
    __m512i dummy = _mm512_setzero_si512();
    const __m512i m = _mm512_set1_epi8(15);
    for (int it = 0; it < iters; ++it) {
        for (int j = 0; j < 64; ++j) {
            __m512i w[8];
            const uint8_t* p = wts + (j % 16) * 512;
            for (int k = 0; k < 8; ++k) {
                const __m512i T = _mm512_load_si512(p + 64 * k);
                if (V == 1) {
                    w[k] = _mm512_and_si512(T, m);
                } else if (V == 2) {
                    w[k] = T;
                    dummy = _mm512_xor_si512(dummy, _mm512_and_si512(T, m));
                } else {
                    w[k] = T;
                }
            }
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                const uint8_t* y = act[t] + (j % 32) * 32 * 4;
                isum[t] = token_sum(isum[t], w, y, sc);
            }
        }
    }
    for (int t = 0; t < 8; ++t) out[t] = _mm512_add_epi32(isum[t], dummy);
}
template <int V>
void bench(const char* name, __m512i sc) {
    __m512i out[8];
    report(name, [&](int iters) { run<V>(iters, out, sc); });
}
void run_all(int seed) {
    const __m512i sc = _mm512_set1_epi32(seed + 2);
    bench<0>("weights as loaded, run-time scale", sc);
    bench<1>("+ and (used)", sc);
    bench<2>("+ and, xor (unused)", sc);
}
}  // namespace dead_ops

int main() {
    if (!__builtin_cpu_supports("avx512vnni")) {
        std::fprintf(stderr, "kquant_inner_loop: needs AVX-512 VNNI\n");
        return 1;
    }
    std::memset(act, 1, sizeof act);
    std::memset(wts, 2, sizeof wts);
    weights_in_l1::run_all();
    unpack_spread::run_all();
    nibble_pairs::run_all();
    dead_ops::run_all(act[0][0]);
}
