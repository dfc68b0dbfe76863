// Internal to src/ops: the attention kernel for caches with dims-major K blocks (f16, bf16, Q8_0
// and Q4_0), for a block of query tokens of one sequence and one K/V head's group of query
// heads (one token: a decode step), written once over a small vector-traits
// struct S and compiled into each ISA's translation unit with that unit's target flags
// (attention_avx2.cpp: 8 lanes, attention_avx512.cpp: 16 lanes). Include only from those
// files: everything here lives in an anonymous namespace, so each unit gets its own copy.
//
// Numerics are the reference's (attention.cpp): f16-rounded queries (bf16-rounded against
// bf16 keys), scaled scores, softmax
// with the max subtracted and the sum in float (lane-wise partial sums; the reference sums in
// double, the difference is far below the f16 rounding that follows), probabilities
// rounded to f16 before they weight the values; K and V values as the reference dequantizes
// them (f16 converted, Q8_0 int8 times its block's f16 scale: one float rounding, the same);
// float rounding aside the results agree. Against Q8_0 keys the queries are quantized as
// Q8_0 and scored with integer dot products (kv_quantize_query_q8), the reference's steps
// exactly: those scores are the reference's bits.
//
// Scores. K blocks are dims-major ([head_dim][block_size] values, ops/attention.h; a Q8_0
// block's scales follow its values as [head_dim / 32][block_size]), so the keys of one block
// are cut into runs of up to S::L consecutive positions and a run's dim d is one vector of L
// keys. Each dim's vector is multiplied by a broadcast query value of each of HS heads,
// accumulating L scores per head with no horizontal sums. R runs are scored together so that
// R x HS accumulators (S::kScoreAcc) cover the FMA latency. Q8_0 keys are stored 4 dims to a
// key's dword ([head_dim / 4][block_size][4]), so a run's 4 dims are one vector of L dwords
// and one int8 dot-product instruction per head (a broadcast dword of 4 query bytes) takes
// 4 x L multiply-adds where an FMA takes L: one run, HS integer sums per 32-dim block, then
// one float step per block. Scores are stored in tiles, [head block of HB][key tile of L][HB][L].
//
// Values (V rows stay row-major): HV heads x CB chunks of L dims in registers
// (HV x CB <= S::kValueAcc; HV = HB, or half of it when that makes CB whole rows), every
// key's chunk converted once per register block and weighted by each head's probability;
// keys in tiles of TKV so later register blocks find the tile's V rows in L1.
//
// S provides: V (the vector type), L (lanes), kScoreAcc, kScoreHeads (kScoreHeadsQ4 for Q4_0
// keys, whose conversion costs more), kValueAcc, zero, set1, fma, sub, for Q8_0 keys VI (an
// integer vector), KQ (a run's 4 dims as loaded), kKeysOffset, izero, load_kq / load_kq_n,
// dot_kq (the exact dot product with 4 query bytes, plus 128 x their sum when
// kKeysOffset) and to_float (minus an offset, as floats),
// for BF16 keys KP (a run's dim pair as loaded), load_kp / load_kp_n, bf_even / bf_odd (a pair's
// dims as floats), kNativeBf16 and, where true, dot_bf16 (vdpbf16ps with a query dim pair),
// load_bf (L bf16 values of a V row),
// mul, load, store, load_h (L f16 values), load_h_n (n < L f16 values, the rest 0, reading only
// those n), load_b (L int8 values as floats), load_q4_pair (L / 2 bytes' low
// nibbles then their high ones, as floats), load_q4_plane (L bytes shifted right by 0 or 4,
// their low nibbles as floats), store_n (the first n lanes),
// round_f16_n, half (one f16 value as a float), and the softmax steps on one tile of
// L scores: exp_tile (accumulating into a Sum), scale_round_tile, reduce_sum; and max_n
// (a lane-wise max over the first n lanes), reduce_max (see the ISA files).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "ops/attention_isa.h"
#include "quant/fp16.h"

namespace lokal {
namespace {

// Up to L consecutive keys in one block: k points at dim 0 of the first (dim d at
// k + d * block_size values; Q4_0: at dim 0 of the block, the first key being slot), ks
// (Q8_0, Q4_0) at its scale of dims 0-31 (dims 32b.. at ks + b * block_size), v at its V row;
// j is the first key's index among the query's keys.
struct KeyRun {
    const uint8_t* k;
    const uint16_t* ks;
    const uint8_t* v;  // the first key's V row (the run's rows follow it, one row apart)
    int64_t j;
    int32_t len;
    int32_t slot;  // the first key's slot in its block
    // Q4_0: 4 when the run's keys are the high nibbles (second half of a block). Derived from
    // slot, kept here so the per-dim loads take it as it is.
    int32_t shift;
};

// The largest divisor of nc that is at most cap (chunks per value register block).
constexpr int chunk_block(int nc, int cap) {
    for (int c = std::min(nc, cap); c > 1; --c)
        if (nc % c == 0) return c;
    return 1;
}

// CB chunks of L dims of one V row from dim L x c0, as floats (the reference's dequantization).
// kPairV (BF16 rows, CB and c0 even): each two chunks from one load of 2L bf16 values, the
// even dims into the first chunk and the odd ones into the second (a shift and a mask instead
// of a widening load and a shift per chunk); the accumulators then hold each 2L dims
// interleaved, put back in order when the outputs are written. A small gain: `taskset -c 1
// bench/ab-kernels 6 'BM_AttentionDecode/ctx:4096/ref:0/thr:1/layers:1/kv:3'` min 182 -> 177
// us against per-chunk loads (2026-12-07); 2 threads from memory 111 -> 108.
template <class S, KvType KT, int CB, bool kPairV = false>
__attribute__((always_inline)) inline void load_v_chunks(const uint8_t* row, int c0,
                                                         typename S::V* v) {
    if constexpr (kPairV) {
        static_assert(CB % 2 == 0);
#pragma GCC unroll 8
        for (int cb = 0; cb < CB; cb += 2) {
            const typename S::KP x = S::load_kp(row + 2 * S::L * (c0 + cb));
            v[cb] = S::bf_even(x);
            v[cb + 1] = S::bf_odd(x);
        }
        return;
    }
    constexpr int L = S::L;
    constexpr bool kQ8 = KT == KvType::Q8_0, kBlk = kQ8 || KT == KvType::Q4_0;
    typename S::V vs{};  // the current block's scale
#pragma GCC unroll 8
    for (int cb = 0; cb < CB; ++cb) {
        const int e = L * (c0 + cb);  // the chunk's first dim
        if constexpr (kBlk) {
            // Block e / 32: an f16 scale, then 32 int8 values (Q4_0: 16 bytes, values 0-15
            // their low nibbles, 16-31 their high ones); the scale read once per block.
            const uint8_t* blk = row + (kQ8 ? 34 : 18) * (e / 32);
            if (cb == 0 || e % 32 == 0) {
                uint16_t h;
                std::memcpy(&h, blk, 2);
                vs = S::set1(S::half(h));
            }
            if constexpr (kQ8)
                v[cb] = S::mul(S::load_b((const int8_t*)blk + 2 + e % 32), vs);
            else
                // (u - 8) exact, then one rounding, as for K.
                v[cb] = S::mul(
                    S::sub(S::load_q4_plane(blk + 2 + e % 16, e % 32 >= 16 ? 4 : 0), S::set1(8.0f)),
                    vs);
        } else if constexpr (KT == KvType::BF16) {
            v[cb] = S::load_bf((const uint16_t*)row + e);
        } else {
            v[cb] = S::load_h((const uint16_t*)row + e);
        }
    }
}

// KT = the cache type (F16, Q8_0 or Q4_0), HD = head_dim when known at compile time (0: read
// from the shape; any multiple of S::L, and of 32 for Q8_0 and Q4_0), HB = query heads per
// register block.
//
// A block of nq queries of one sequence (one block table, the same first key: see
// attention_paged) is one task: each query's G heads are heads of the block (query i's head g
// is head i x G + g), so every K/V tile loaded serves all of them. Each head attends to its
// own query's keys only: the keys past them (the later queries' own positions) score as for
// the rest but are left out of the head's max, get probability 0 and weight nothing.
// kMulti: whether nq may exceed 1 (the single-query kernel keeps none of the per-head key
// counts' tests: with them, `BM_AttentionDecode` ran 2-7% slower, min of 5 alternated runs).
template <class S, KvType KT, int HD, int HB, bool kMulti>
void attend_dims_major(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                       const AttentionQuery* queries, int nq, HeadSpan heads,
                       std::vector<float>& buf) {
    using V = typename S::V;
    constexpr int L = S::L;
    constexpr bool kQ8 = KT == KvType::Q8_0, kQ4 = KT == KvType::Q4_0, kBF = KT == KvType::BF16;
    constexpr bool kBlk = kQ8 || kQ4;  // GGUF blocks: a scale per 32 values of a row
    constexpr int EB = kQ8 ? 1 : 2;    // bytes per K value (Q4_0: half a byte)
    // Bytes from one key to the next in a dim's run (BF16: a dim pair's dword, Q8_0: 4 dims').
    constexpr int KEY_STEP = kQ8 || kBF ? 4 : EB;
    static_assert(32 % L == 0, "a Q8_0 block is whole vectors");
    // Scoring takes HS heads at a time (up to S::kScoreHeads) and R runs of keys, R x HS
    // accumulators: AVX-512 8 heads x 2 runs; AVX2 4 x 2 (8 heads x 1 run spent a broadcast
    // per FMA and a key conversion per 8, and was 1.1x slower).
    constexpr int kSH = kQ4 ? S::kScoreHeadsQ4 : S::kScoreHeads;
    constexpr int HS = HB < kSH ? HB : kSH;
    // At most 4 runs: each run is a stream of its own through memory (runs lie in different
    // cache blocks), and with one or two heads per K/V head the 16 or 8 that fill the
    // accumulators read slower than 4 (Llama 2 7B's heads, 4,096 keys from memory on 2
    // threads: 2.2 ms a layer with 16, 1.7 with 4, 1.8 with 1 or 2; BM_AttentionDecodeMha).
    // Q8_0 keys: one run, its HS heads' integer sums beside their float accumulators (with
    // one head, 4 runs were no faster).
    constexpr int R = kQ8                     ? 1
                      : S::kScoreAcc / HS > 4 ? 4
                      : S::kScoreAcc / HS > 1 ? S::kScoreAcc / HS
                                              : 1;
    // Keys that K and V are prefetched ahead (128 and 256 measured no better, 2026-12-05),
    // and the groups of R runs that makes while scoring.
    constexpr int kAhead = 64;
    constexpr int PR = kAhead / (R * L) > 1 ? kAhead / (R * L) : 1;
    // Besides those line requests, one line kPageRequestAhead bytes further down each stream
    // at every group of runs (scoring) and every run (values): a K (V) head's blocks lie one
    // after another (ops/attention.h), so that line starts a page that the hardware
    // prefetcher then streams, well before the line requests reach it.
    // BM_AttentionDecode/ctx:4096/ref:0/thr:2/layers:22/kv:0 (from memory, min / mean) 139-143
    // / 149 -> 114-117 / 120-126 us on AVX-512, level in cache and on AVX2 (2026-12-07, Zen 5,
    // docs/PERFORMANCE.md "Decode attention: a request a page ahead"). The matmuls' page
    // requests (kPageAheadOfLines, gemm_isa.h) go as far ahead; each was measured on its own.
    constexpr size_t kPageRequestAhead = 16384;
    constexpr int TKV = 64;     // keys per value tile
    constexpr int NC = HD / L;  // 0 when HD is
    // Values: HV heads x CB chunks per register block. Whole V rows (CB = NC) for half the
    // head block at a time where that fits (AVX-512, head_dim 64, 5-8 heads per K/V head:
    // 4 heads x 4 chunks, each row converted twice) rather than all HB heads over half a row
    // at a time: a row is then read from memory in one pass, both its lines together, not a
    // line per pass over the tile. A small gain: `BM_AttentionDecode` from memory 2-15%
    // faster, TinyLlama generation at 4,096 cached tokens 1.03x (Q4_K_M) to level
    // (Q8_0), docs/PERFORMANCE.md.
    // Only where measured: other shapes would fit too (head_dim 128 with 3-4 heads per K/V
    // head as 2 heads x 8 chunks, AVX2's head_dim 32), but keep their chunk passes until
    // someone measures them.
    constexpr bool kWholeRows = L == 16 && NC == 4 && HB == 8 && S::kValueAcc == 16;
    constexpr int HV = kWholeRows ? 4 : HB;
    constexpr int CB = kWholeRows ? NC : NC ? chunk_block(NC, S::kValueAcc / HB) : 1;
    static_assert(HV * CB <= S::kValueAcc && HB % HV == 0, "value register blocks");
    // BF16 V rows two chunks a load (load_v_chunks), where the chunk blocks are whole pairs.
    constexpr bool kPairV = kBF && NC % 2 == 0 && CB % 2 == 0 && NC > 0;
    constexpr int TS = HB * L;  // floats per score tile: L keys of HB heads
    static_assert(HD % L == 0, "head_dim must be whole vectors");
    if constexpr (!kMulti) nq = 1;  // known here: the single-query code stays as lean
    const int kv_head = heads.kv_head;
    // Heads per query taken here (one query: its heads [heads.first, + heads.count) of those
    // sharing this K/V head; a block of queries: all of them), and the block's heads. Each
    // head's arithmetic does not depend on which others share its register blocks (the
    // scores, softmax and values are per head), so any split gives the same bits.
    const int QG = kMulti ? s.n_head / s.n_kv_head : heads.count;
    const int G = QG * nq;
    const int n_hblk = (G + HB - 1) / HB;
    const AttentionQuery& query = queries[0];  // the block table and first key are shared
    const int hd = HD ? HD : s.head_dim;
    const int64_t q_at = ((int64_t)kv_head * (s.n_head / s.n_kv_head) + heads.first) * hd;
    const int nc = hd / L;
    const int64_t bs = s.block_size;
    const int64_t half = bs / 2;                           // Q4_0: a nibble plane's keys
    const int64_t k_dim_bytes = kQ4 ? half : EB * bs;      // one dim of a K block
    const int64_t v_row_bytes = 2 * kv_row_elems(KT, hd);  // one V row
    const int32_t first = attention_first_key(s, query.pos);
    // Keys each head attends to ([n_hblk * HB]; the slots past the block's heads take the
    // last head's), the fewest (n_min) and the most (n: the keys scored).
    // (One query: all its heads attend to its n keys, nk is not used.)
    int64_t n = query.pos - first + 1, n_min = n;
    const int64_t* nk = nullptr;
    if constexpr (kMulti) {
        thread_local std::vector<int64_t> head_keys;
        head_keys.resize((size_t)n_hblk * HB);
        for (int g = 0; g < n_hblk * HB; ++g)
            head_keys[g] = queries[std::min(g, G - 1) / QG].pos - first + 1;
        n = *std::max_element(head_keys.begin(), head_keys.end());
        n_min = *std::min_element(head_keys.begin(), head_keys.end());
        nk = head_keys.data();
    }
    const int64_t n_tiles = (n + L - 1) / L;
    buf.resize((size_t)(2 * G * hd + 2 * n_hblk * HB + n_hblk * n_tiles * TS + hd * HS));
    float* q = buf.data();                    // [G][hd], f16-rounded (BF16: bf16-rounded)
    float* acc = q + (size_t)G * hd;          // [G][hd]
    float* inv = acc + (size_t)G * hd;        // [n_hblk * HB] softmax normalizers, 1 / sum
    float* hmax = inv + (size_t)n_hblk * HB;  // [n_hblk * HB] each head's largest score
    // [head block][key tile][HB][L]: for a key, its HB heads' scores are L floats apart, one
    // pointer reaches them all in the values loop (separate per-head rows took 8 pointer
    // registers and made the values 1.6x slower). Heads past the group's end in the last
    // block redo the last head; their results are dropped.
    float* scores = hmax + (size_t)n_hblk * HB;
    float* qt = scores + (size_t)n_hblk * n_tiles * TS;  // [hd][HS] one head block's queries
    for (int i = 0; i < nq; ++i) {
        const float* src = queries[i].q + q_at;
        float* dst = q + (int64_t)i * QG * hd;
        if constexpr (kBF)  // the pair dot product's operand (the reference rounds the same)
            for (int e = 0; e < QG * hd; ++e) dst[e] = bf16_to_fp32(fp32_to_bf16(src[e]));
        else
            S::round_f16_n(src, dst, QG * hd);
    }

    // The keys as runs that cross neither a cache block nor a score tile, padded with empty
    // runs (len 0: nothing loaded or stored) to whole groups of R and the prefetch distance.
    // Walked with a running block index and slot (no division per run), written in place
    // (push_back's capacity check per run was ~2% of the kernel).
    thread_local std::vector<KeyRun> runs_tl;
    const int64_t max_runs = n / L + n / bs + 2;  // each run ends a tile, a block or the keys
    if ((int64_t)runs_tl.size() < max_runs + R + PR * R)
        runs_tl.resize((size_t)(max_runs + R + PR * R));
    int64_t n_runs = 0;
    {
        KeyRun* out = runs_tl.data();
        const KvLayout layout = kv_layout(s);
        int64_t block = first / bs, slot = first % bs;
        for (int64_t j = 0; j < n;) {
            const int len = (int)std::min<int64_t>(std::min<int64_t>(L - j % L, bs - slot), n - j);
            const int64_t at = layout.block_offset(query.block_table[block], kv_head);
            const uint8_t* kb = (const uint8_t*)(k_cache + at);
            const uint16_t* ks = kBlk ? (const uint16_t*)(kb + hd * k_dim_bytes) + slot : nullptr;
            out[n_runs++] = {kQ4 ? kb : kb + KEY_STEP * slot,
                             ks,
                             (const uint8_t*)(v_cache + at) + slot * v_row_bytes,
                             j,
                             len,
                             (int32_t)slot,
                             kQ4 && slot >= half ? 4 : 0};
            j += len;
            slot += len;
            if (slot == bs) slot = 0, ++block;
        }
        // (PR * R runs are 64 keys, so the padding also covers the values' prefetch 64 keys
        // ahead.)
        const KeyRun pad{out[n_runs - 1].k,    out[n_runs - 1].ks,   out[n_runs - 1].v, 0, 0,
                         out[n_runs - 1].slot, out[n_runs - 1].shift};
        std::fill(out + n_runs, out + (n_runs + R - 1) / R * R + PR * R, pad);
    }
    const KeyRun* runs = runs_tl.data();
    // Dim rows of a run are k_dim_bytes apart: one prefetch per cache line they cover, every
    // d_mask + 1 dims (a power of two: a division per dim cost ~5% of the scoring time).
    // (Q8_0: rows of 4 dims, 4 * block_size bytes apart; at least one prefetch per row.)
    int d_mask = kQ8 ? 3 : 0;
    while (k_dim_bytes * 2 * (d_mask + 1) <= 64) d_mask = 2 * d_mask + 1;
    // Q8_0, Q4_0: dims in blocks of 32 sharing a scale per key; f16: one span of all dims.
    const int d_blk = kBlk ? 32 : hd;

    // Prefetches run kAhead keys ahead, so nothing fetched the first ones' K and V before
    // they were used: with a short context (a batch of sequences a few hundred positions
    // long) a task is then mostly cold misses, one at a time (8 sequences at 96 positions:
    // 2.2x the time from memory that they take in cache). So their K lines are requested
    // here at once, and their V rows a few per dim while they are scored (below).
    for (int64_t r = 0; r < std::min<int64_t>(n_runs, PR * R); ++r) {
        for (int d = 0; d < hd; d += d_mask + 1)
            _mm_prefetch((const char*)(runs[r].k + d * k_dim_bytes), _MM_HINT_T0);
        if constexpr (kBlk)
            for (int d = 0; d < hd; d += 32)
                _mm_prefetch((const char*)(runs[r].ks + d / 32 * bs), _MM_HINT_T0);
    }
    const int v_lines = (int)(v_row_bytes + 63) / 64 + (kBlk ? 1 : 0);  // lines a V row spans
    // A group of R runs is scored in hd / (d_mask + 1) prefetch points: its keys' V rows
    // spread over them.
    const int v_keys_per_point = (R * L + hd / (d_mask + 1) - 1) / (hd / (d_mask + 1));

    // Q8_0 keys meet the queries quantized as Q8_0 (kv_quantize_query_q8, ops/attention.h):
    // per head block, q4 [hd / 4][HS] the 4 query bytes of each head at each 4 dims (one
    // vpdpbusd operand), qd [hd / 32][HS] the block scales, qc [hd / 32][HS] what the dot
    // product adds to the exact sum (128 x the block's query sum where keys are stored + 128).
    const int nb = hd / 32;
    thread_local std::vector<int8_t> q8;
    thread_local std::vector<int32_t> q8_sum, q4, qc;
    // BF16 keys with the pair dot product: qp [hd / 2][HS] each head's dims 2i, 2i + 1 as one
    // dword of two bf16 values (low half the even dim), broadcast against a run's dim pair.
    thread_local std::vector<uint32_t> qp;
    if constexpr (kBF && S::kNativeBf16) qp.resize((size_t)hd / 2 * HS);
    const uint32_t* qpd = qp.data();  // (a thread_local's data is reloaded at every use)
    thread_local std::vector<float> q8_scale, qd;
    if constexpr (kQ8) {
        q8.resize((size_t)G * hd);
        q8_scale.resize((size_t)G * nb);
        q8_sum.resize((size_t)G * nb);
        q4.resize((size_t)hd / 4 * HS);
        qd.resize((size_t)nb * HS);
        qc.resize((size_t)nb * HS);
        for (int g = 0; g < G; ++g)
            kv_quantize_query_q8(q + (int64_t)g * hd, hd, q8.data() + (int64_t)g * hd,
                                 q8_scale.data() + g * nb, q8_sum.data() + g * nb);
    }

    const V scale = S::set1(s.scale);
    // Every head slot of every head block, the slots past the group's end with the last
    // head's query (their results are dropped), so the softmax sees only computed scores.
    for (int g0 = 0; g0 < n_hblk * HB; g0 += HS) {
        float* sblk = scores + (g0 / HB) * n_tiles * TS + (g0 % HB) * L;
        // The HS heads' query values dim by dim ([hd][HS]): one pointer for the broadcasts of
        // every head (a pointer per head left too few registers: two were reloaded per dim).
        for (int h = 0; h < HS; ++h) {
            const int g = std::min(g0 + h, G - 1);
            const float* qh = q + (int64_t)g * hd;
            for (int d = 0; d < hd; ++d) qt[d * HS + h] = qh[d];
            if constexpr (kBF && S::kNativeBf16)
                for (int d = 0; d < hd; d += 2)
                    qp[d / 2 * HS + h] =
                        (uint32_t)fp32_to_bf16(qh[d]) | (uint32_t)fp32_to_bf16(qh[d + 1]) << 16;
            if constexpr (kQ8) {
                for (int d = 0; d < hd; d += 4)
                    std::memcpy(&q4[d / 4 * HS + h], &q8[(size_t)g * hd + d], 4);
                for (int b = 0; b < nb; ++b) {
                    qd[b * HS + h] = q8_scale[g * nb + b];
                    qc[b * HS + h] = S::kKeysOffset ? 128 * q8_sum[g * nb + b] : 0;
                }
            }
        }
        // Each head's lane-wise running max of its scores, taken as they are stored (a pass
        // over the scores less for the softmax).
        V m[HS];
#pragma GCC unroll 8
        for (int h = 0; h < HS; ++h) m[h] = S::set1(-INFINITY);
        for (int64_t r0 = 0; r0 < n_runs; r0 += R) {
            // The runs PR groups ahead, one line per run every d_mask + 1 dims, spread over the
            // dims loop (all of a group's lines at once overflowed the miss buffers: scoring
            // from memory took 1.5x its time from L3).
            const KeyRun* ahead = runs + r0 + PR * R;
            const bool prefetch = g0 == 0;
            const bool first_v = prefetch && runs[r0].j < kAhead;  // the first keys' V rows
            if (prefetch) _mm_prefetch((const char*)runs[r0].k + kPageRequestAhead, _MM_HINT_T0);
            V a[R][HS];
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
                for (int h = 0; h < HS; ++h) a[r][h] = S::zero();
            // Full runs take whole-vector loads. A Q4_0 run also needs its keys to be one
            // block of L (both nibble planes of L / 2 bytes) or L of one plane; others are
            // gathered key by key (runs cut by a block's end, a window or the last keys).
            bool full = true;
            for (int r = 0; r < R; ++r) {
                const KeyRun& run = runs[r0 + r];
                full &= run.len == L;
                if constexpr (kQ4)
                    full &= (bs == L && run.slot == 0) || run.slot % half + L <= half;
            }
            // At dims d with (d & d_mask) == 0: the K lines PR groups ahead and, for the first
            // keys, some of their V rows.
            auto prefetch_dim = [&](int d) __attribute__((always_inline)) {
                if (!prefetch || (d & d_mask) != 0) return;
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r)
                    _mm_prefetch((const char*)(ahead[r].k + d * k_dim_bytes), _MM_HINT_T0);
                if (first_v) {
                    const int k0 = d / (d_mask + 1) * v_keys_per_point;
                    for (int ki = k0; ki < k0 + v_keys_per_point && ki < R * L; ++ki) {
                        const KeyRun& rk = runs[r0 + ki / L];
                        if (ki % L >= rk.len) continue;
                        const char* row = (const char*)rk.v + ki % L * v_row_bytes;
                        for (int b = 0; b < v_lines; ++b) _mm_prefetch(row + 64 * b, _MM_HINT_T0);
                    }
                }
            };
            // Q8_0 keys: per 32-dim block, the exact integer dot product of each head's query
            // bytes with each key's (4 dims a step), then acc = fma(isum, key scale x query
            // scale, acc): the reference's steps (attention.cpp, score_q8_keys).
            auto score_q8 = [&] {
                for (int b = 0; b < nb; ++b) {
                    typename S::VI ia[R][HS];
#pragma GCC unroll 8
                    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
                        for (int h = 0; h < HS; ++h) ia[r][h] = S::izero();
                    for (int d = 32 * b; d < 32 * b + 32; d += 4) {
                        prefetch_dim(d);
                        typename S::KQ kq[R];
#pragma GCC unroll 8
                        for (int r = 0; r < R; ++r) {
                            const uint8_t* p = runs[r0 + r].k + (int64_t)d * bs;
                            kq[r] = full ? S::load_kq(p) : S::load_kq_n(p, runs[r0 + r].len);
                        }
#pragma GCC unroll 8
                        for (int h = 0; h < HS; ++h) {
                            const int32_t qw = q4[d / 4 * HS + h];
#pragma GCC unroll 8
                            for (int r = 0; r < R; ++r) ia[r][h] = S::dot_kq(ia[r][h], kq[r], qw);
                        }
                    }
                    V dk[R];
#pragma GCC unroll 8
                    for (int r = 0; r < R; ++r) {
                        const uint16_t* ks = runs[r0 + r].ks + b * bs;
                        dk[r] = full ? S::load_h(ks) : S::load_h_n(ks, runs[r0 + r].len);
                        if (prefetch)
                            _mm_prefetch((const char*)(ahead[r].ks + b * bs), _MM_HINT_T0);
                    }
#pragma GCC unroll 8
                    for (int h = 0; h < HS; ++h) {
                        const V dq = S::set1(qd[b * HS + h]);
                        const int32_t c = qc[b * HS + h];
#pragma GCC unroll 8
                        for (int r = 0; r < R; ++r)
                            a[r][h] = S::fma(S::to_float(ia[r][h], c), S::mul(dk[r], dq), a[r][h]);
                    }
                }
            };
            // BF16 keys: a run's dim pair is one vector of L dwords (dims 2i, 2i + 1 of a key).
            // With the pair dot product, one instruction per head and run takes both dims
            // (the odd dim's product added first, then the even one's: vdpbf16ps's order);
            // otherwise the pair splits into two float vectors and two fmas in that order.
            // The products of bf16 values are exact in float, so both round alike (but for
            // the instruction's flushing of denormals).
            // Full runs (kFull) and short ones are separate loops: a load chosen per run inside
            // the loop kept the key vectors on the stack, reloaded for every instruction.
            auto score_bf16 = [&](auto full_runs) {
                constexpr bool kFull = decltype(full_runs)::value;
                // The accumulators as locals: through the captured array GCC 12 stored every
                // vdpbf16ps result back to the stack (1.2x the f16 kernel's time).
                V acc[R][HS];
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
                    for (int h = 0; h < HS; ++h) acc[r][h] = a[r][h];
                for (int d = 0; d < hd; d += 2) {
                    prefetch_dim(d);
                    typename S::KP kp[R];
#pragma GCC unroll 8
                    for (int r = 0; r < R; ++r) {
                        const uint8_t* p = runs[r0 + r].k + (int64_t)d * k_dim_bytes;
                        if constexpr (kFull)
                            kp[r] = S::load_kp(p);
                        else
                            kp[r] = S::load_kp_n(p, runs[r0 + r].len);
                    }
                    if constexpr (S::kNativeBf16) {
#pragma GCC unroll 8
                        for (int h = 0; h < HS; ++h) {
                            const uint32_t qw = qpd[d / 2 * HS + h];
#pragma GCC unroll 8
                            for (int r = 0; r < R; ++r)
                                acc[r][h] = S::dot_bf16(acc[r][h], kp[r], qw);
                        }
                    } else {
                        V ke[R], ko[R];
#pragma GCC unroll 8
                        for (int r = 0; r < R; ++r)
                            ke[r] = S::bf_even(kp[r]), ko[r] = S::bf_odd(kp[r]);
#pragma GCC unroll 8
                        for (int h = 0; h < HS; ++h) {
                            const V qo = S::set1(qt[(d + 1) * HS + h]),
                                    qe = S::set1(qt[d * HS + h]);
#pragma GCC unroll 8
                            for (int r = 0; r < R; ++r)
                                acc[r][h] = S::fma(qe, ke[r], S::fma(qo, ko[r], acc[r][h]));
                        }
                    }
                }
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
                    for (int h = 0; h < HS; ++h) a[r][h] = acc[r][h];
            };
            // hd vectors of L keys per run, each weighted by every head's query value; a Q4_0
            // block's levels times the keys' scales for that block (sc).
            auto score = [&](auto load) {
                for (int d0 = 0; d0 < hd; d0 += d_blk) {
                    // Q4_0: levels u in 0..15 give (u - 8) x scale as fma(u, scale, -8 x scale),
                    // one rounding of the same exact product (-8 x scale is exact). (Q8_0 keys
                    // take score_q8.)
                    V sc[R], sc8[R];
                    if constexpr (kQ4) {
#pragma GCC unroll 8
                        for (int r = 0; r < R; ++r) {
                            const uint16_t* ks = runs[r0 + r].ks + d0 / 32 * bs;
                            sc[r] = full ? S::load_h(ks) : S::load_h_n(ks, runs[r0 + r].len);
                            sc8[r] = S::mul(sc[r], S::set1(-8.0f));
                            if (prefetch)
                                _mm_prefetch((const char*)(ahead[r].ks + d0 / 32 * bs),
                                             _MM_HINT_T0);
                        }
                    }
                    for (int d = d0; d < d0 + d_blk; ++d) {
                        prefetch_dim(d);
                        V kv[R];
#pragma GCC unroll 8
                        for (int r = 0; r < R; ++r) {
                            kv[r] = load(runs[r0 + r], d * k_dim_bytes);
                            if constexpr (kQ4) kv[r] = S::fma(kv[r], sc[r], sc8[r]);
                        }
#pragma GCC unroll 8
                        for (int h = 0; h < HS; ++h) {
                            const V qd = S::set1(qt[d * HS + h]);
#pragma GCC unroll 8
                            for (int r = 0; r < R; ++r) a[r][h] = S::fma(qd, kv[r], a[r][h]);
                        }
                    }
                }
            };
            // A run's L keys at dim offset `at`: whole vectors, or the run's len when short.
            // Q4_0: a block of L keys is both nibble planes of L / 2 bytes; otherwise a run
            // is L keys of one plane (its shift picks the plane).
            if constexpr (kQ8)
                score_q8();
            else if constexpr (kBF)
                full ? score_bf16(std::true_type{}) : score_bf16(std::false_type{});
            else if (kQ4 && full && bs == L)
                score([](const KeyRun& run, int64_t at) { return S::load_q4_pair(run.k + at); });
            else if (full)
                score([half](const KeyRun& run, int64_t at) {
                    if constexpr (kQ4) {
                        return S::load_q4_plane(run.k + at + run.slot % half, run.shift);
                    } else {
                        return S::load_h((const uint16_t*)(run.k + at));
                    }
                });
            else
                score([half](const KeyRun& run, int64_t at) {
                    if constexpr (kQ4) {
                        alignas(64) int8_t t[S::L] = {};  // S::L: clang does not see L here
                        for (int i = 0; i < run.len; ++i) {
                            const int64_t slot = run.slot + i;
                            const uint8_t byte = run.k[at + slot % half];
                            t[i] = (int8_t)(slot >= half ? byte >> 4 : byte & 0x0F);
                        }
                        return S::load_b(t);
                    } else {
                        return S::load_h_n((const uint16_t*)(run.k + at), run.len);
                    }
                });
            for (int r = 0; r < R; ++r) {
                const KeyRun& run = runs[r0 + r];
                float* dst = sblk + run.j / L * TS + run.j % L;
                // A head's max over its own keys only (a run past some head's last key: the
                // later queries' positions in a block).
                const bool past = kMulti && run.j + run.len > n_min;
#pragma GCC unroll 8
                for (int h = 0; h < HS; ++h) {
                    const V y = S::mul(a[r][h], scale);
                    S::store_n(dst + h * L, y, run.len);
                    const int live =
                        past ? (int)std::clamp<int64_t>(nk[g0 + h] - run.j, 0, run.len) : run.len;
                    m[h] = S::max_n(m[h], y, live);
                }
            }
        }
        for (int h = 0; h < HS; ++h) hmax[g0 + h] = S::reduce_max(m[h]);
    }

    // Softmax, a head block at a time in memory order (tile by tile, all HB heads of a tile;
    // one head at a time strided through the tiles ran at L2 latency): the exponentials and
    // their sums (lanes past n get 0), the max known from scoring. The normalization (times
    // 1 / sum, rounded to f16) happens tile by tile in the values pass below, where the tile
    // is used.
    for (int b = 0; b < n_hblk; ++b) {
        float* sblk = scores + b * n_tiles * TS;
        V vmax[HB];
        typename S::Sum sum[HB];
#pragma GCC unroll 8
        for (int h = 0; h < HB; ++h) vmax[h] = S::set1(hmax[b * HB + h]);
        // The block's heads' key counts (a block of queries only: nk is null for one query).
        const int64_t* bk = kMulti ? nk + b * HB : nullptr;
        for (int64_t t = 0; t < n_tiles; ++t) {
            const int live_all = (int)std::min<int64_t>(L, n - t * L);  // (one query's heads)
#pragma GCC unroll 8
            for (int h = 0; h < HB; ++h) {
                const int live = kMulti ? (int)std::clamp<int64_t>(bk[h] - t * L, 0, L) : live_all;
                S::exp_tile(sblk + t * TS + h * L, vmax[h], live, sum[h]);
            }
        }
        for (int h = 0; h < HB; ++h) inv[b * HB + h] = (float)(1.0 / S::reduce_sum(sum[h]));
    }

    // Values, run by run (no per-key row table: 8 bytes per key written and read back).
    constexpr int RA = kAhead / L;  // runs ahead for the V prefetch: kAhead keys when full
    static_assert(TKV % L == 0 && RA <= PR * R, "value tiles are whole runs' tiles");
    // Lines per V row (a Q8_0 row of 34-byte blocks may straddle one more).
    const int row_lines = (int)(v_row_bytes + 63) / 64 + (kBlk ? 1 : 0);
    const int n_pass = (nc + CB - 1) / CB;  // chunk passes per head block
    std::fill(acc, acc + (size_t)G * hd, 0.0f);
    for (int g0 = 0; g0 < G; g0 += HB) {
        const int hb = std::min(HB, G - g0);
        float* sblk = scores + (g0 / HB) * n_tiles * TS;
        int64_t r_begin = 0;  // the tile's first run
        for (int64_t j0 = 0; j0 < n; j0 += TKV) {
            const int64_t j1 = std::min<int64_t>(n, j0 + TKV);
            int64_t r_end = r_begin;
            while (r_end < n_runs && runs[r_end].j < j1) ++r_end;
            // This tile's probabilities: times 1 / sum, rounded to f16 (TKV is whole tiles).
            for (int64_t t = j0 / L; t * L < j1; ++t)
#pragma GCC unroll 8
                for (int h = 0; h < HB; ++h)
                    S::scale_round_tile(sblk + t * TS + h * L, S::set1(inv[g0 + h]));
            // Register blocks: HV heads from hs, CB chunks from c0 (kWholeRows: two of heads,
            // one of chunks; otherwise one of heads, nc / CB of chunks).
            for (int blk = 0; blk < HB / HV * n_pass; ++blk) {
                const int hs = blk / n_pass * HV, c0 = blk % n_pass * CB;
                V a[HV][CB];
#pragma GCC unroll 8
                for (int h = 0; h < HV; ++h)
#pragma GCC unroll 8
                    for (int cb = 0; cb < CB; ++cb)
                        a[h][cb] =
                            S::load(acc + (g0 + std::min(hs + h, hb - 1)) * hd + L * (c0 + cb));
                // The rows RA runs ahead (by the first heads' blocks only): with as many
                // passes over the chunk blocks as lines per row, each of the first passes
                // takes one line per key (a steady number of misses in flight); otherwise
                // the first pass takes them all.
                const int pass = c0 / CB;
                const int pf_first = n_pass >= row_lines ? pass : 0;
                const int pf_end = g0 > 0 || hs > 0      ? 0
                                   : n_pass >= row_lines ? (pass < row_lines ? pass + 1 : 0)
                                   : pass == 0           ? row_lines
                                                         : 0;
                for (int64_t r = r_begin; r < r_end; ++r) {
                    const KeyRun& run = runs[r];
                    const uint8_t* ahead = runs[r + RA].v;
                    // Key i's share of the rows RA runs ahead.
                    auto request_ahead = [&](int i) __attribute__((always_inline)) {
                        for (int b = pf_first; b < pf_end; ++b)
                            _mm_prefetch((const char*)(ahead + i * v_row_bytes) + 64 * b,
                                         _MM_HINT_T0);
                    };
                    if (pf_end > 0)
                        _mm_prefetch((const char*)run.v + kPageRequestAhead, _MM_HINT_T0);
                    // head hs + h: pt[h * L + i]
                    const float* pt = sblk + run.j / L * TS + run.j % L + hs * L;
                    const uint8_t* row = run.v;
                    // Keys past some head's own (a block's later positions, kMulti only) are
                    // weighted only into the heads that attend to them, after the others: no
                    // head adds even 0 x v for a key it does not attend to.
                    const int i_end =
                        kMulti && run.j + run.len > n_min
                            ? (int)std::max<int64_t>(0, std::min<int64_t>(run.len, n_min - run.j))
                            : run.len;
                    // A whole run whose probabilities all rounded to 0 for the register
                    // block's heads (attention that is sharp over a long context) adds only
                    // 0 x v: skipped, with the same bits (an accumulator starts at +0 and
                    // never becomes -0, and +-0 added leaves it as it is; V rows are finite
                    // unless a value overflowed its type, where 0 x inf would have been NaN).
                    // Its prefetches still go out, for the rows after it.
                    if constexpr (!kMulti) {
                        if (run.len == L) {
                            V bits = S::load(pt);
#pragma GCC unroll 8
                            for (int h = 1; h < HV; ++h)
                                bits = S::or_bits(bits, S::load(pt + h * L));
                            if (S::zero_bits(bits)) {
                                for (int i = 0; i < L; ++i) request_ahead(i);
                                continue;
                            }
                        }
                    }
                    for (int i = 0; i < i_end; ++i, row += v_row_bytes) {
                        request_ahead(i);
                        V v[CB];
                        load_v_chunks<S, KT, CB, kPairV>(row, c0, v);
#pragma GCC unroll 8
                        for (int h = 0; h < HV; ++h) {
                            const V p = S::set1(pt[h * L + i]);
#pragma GCC unroll 8
                            for (int cb = 0; cb < CB; ++cb) a[h][cb] = S::fma(p, v[cb], a[h][cb]);
                        }
                    }
                    if constexpr (kMulti) {
                        const int64_t* hk = nk + g0 + hs;  // the register block's heads' keys
                        for (int i = i_end; i < run.len; ++i, row += v_row_bytes) {
                            V v[CB];
                            load_v_chunks<S, KT, CB, kPairV>(row, c0, v);
                            for (int h = 0; h < HV; ++h) {
                                if (run.j + i >= hk[h]) continue;
                                const V p = S::set1(pt[h * L + i]);
                                for (int cb = 0; cb < CB; ++cb)
                                    a[h][cb] = S::fma(p, v[cb], a[h][cb]);
                            }
                        }
                    }
                }
#pragma GCC unroll 8
                for (int h = 0; h < HV; ++h)
                    if (hs + h < hb)
#pragma GCC unroll 8
                        for (int cb = 0; cb < CB; ++cb)
                            S::store(acc + (g0 + hs + h) * hd + L * (c0 + cb), a[h][cb]);
            }
            r_begin = r_end;
        }
    }
    for (int i = 0; i < nq; ++i) {
        float* out = queries[i].out + q_at;
        const float* src = acc + (int64_t)i * QG * hd;
        if constexpr (kPairV) {
            // Each 2L dims were accumulated as [even dims][odd dims] (load_v_chunks).
            for (int e = 0; e < QG * hd; e += 2 * L)
                for (int j = 0; j < L; ++j) {
                    out[e + 2 * j] = src[e + j];
                    out[e + 2 * j + 1] = src[e + L + j];
                }
        } else {
            std::copy_n(src, QG * hd, out);
        }
    }
}

// HB: the smallest of 1, 2, 4, 8 that holds the group (8 for larger groups, in blocks).
template <class S, KvType KT, int HD>
void attend_dims_major_group(const AttentionShape& s, const uint16_t* k, const uint16_t* v,
                             const AttentionQuery* q, int nq, HeadSpan h, std::vector<float>& buf) {
    const int group = h.count * nq;  // the block's heads
    // A block of queries (attention_paged makes them of up to 8 heads; a sequence's last block
    // may have fewer).
    if (nq > 1)
        return group > 4 ? attend_dims_major<S, KT, HD, 8, true>(s, k, v, q, nq, h, buf)
                         : attend_dims_major<S, KT, HD, 4, true>(s, k, v, q, nq, h, buf);
    if (group > 4) return attend_dims_major<S, KT, HD, 8, false>(s, k, v, q, nq, h, buf);
    if (group > 2) return attend_dims_major<S, KT, HD, 4, false>(s, k, v, q, nq, h, buf);
    if (group > 1) return attend_dims_major<S, KT, HD, 2, false>(s, k, v, q, nq, h, buf);
    attend_dims_major<S, KT, HD, 1, false>(s, k, v, q, nq, h, buf);
}

// Any head_dim that is a multiple of S::L (of 32 for Q8_0); the common sizes fully unrolled.
template <class S, KvType KT>
void attend_dims_major_dispatch(const AttentionShape& s, const uint16_t* k, const uint16_t* v,
                                const AttentionQuery* q, int nq, HeadSpan h,
                                std::vector<float>& buf) {
    switch (s.head_dim) {
        case 64:
            return attend_dims_major_group<S, KT, 64>(s, k, v, q, nq, h, buf);
        case 128:
            return attend_dims_major_group<S, KT, 128>(s, k, v, q, nq, h, buf);
        case 32:
            return attend_dims_major_group<S, KT, 32>(s, k, v, q, nq, h, buf);
        case 96:
            return attend_dims_major_group<S, KT, 96>(s, k, v, q, nq, h, buf);
        case 256:
            return attend_dims_major_group<S, KT, 256>(s, k, v, q, nq, h, buf);
        case 80:
            if constexpr (KT == KvType::F16)
                return attend_dims_major_group<S, KT, 80>(s, k, v, q, nq, h, buf);
            [[fallthrough]];
        default:
            return attend_dims_major_group<S, KT, 0>(s, k, v, q, nq, h, buf);
    }
}

// Every cache type (all have dims-major K blocks, ops/attention.h).
template <class S>
void attend_dims_major_cache(const AttentionShape& s, const uint16_t* k, const uint16_t* v,
                             const AttentionQuery* q, int nq, HeadSpan h, std::vector<float>& buf) {
    if (s.kv_type == KvType::Q8_0)
        return attend_dims_major_dispatch<S, KvType::Q8_0>(s, k, v, q, nq, h, buf);
    if (s.kv_type == KvType::Q4_0)
        return attend_dims_major_dispatch<S, KvType::Q4_0>(s, k, v, q, nq, h, buf);
    if (s.kv_type == KvType::BF16)
        return attend_dims_major_dispatch<S, KvType::BF16>(s, k, v, q, nq, h, buf);
    attend_dims_major_dispatch<S, KvType::F16>(s, k, v, q, nq, h, buf);
}

}  // namespace
}  // namespace lokal
