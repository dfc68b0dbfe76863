// Random-weight model synthesis: presets, llama-quantize's per-tensor type mix, and a GGUF
// writer that streams tensor data as it is generated.
//
// gguf::Writer wants every tensor's bytes in memory at write() time, which a 7B model
// would not fit; so the metadata is encoded by gguf::Writer (one encoder of values in the
// project) and this file appends the tensor infos and streams the data itself.
#include "model/synth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "gguf/gguf.h"
#include "ops/thread_pool.h"
#include "quant/quantize.h"

namespace lokal::synth {
namespace {

// name, arch, vocab, dim, layers, heads, kv heads, ffn, experts, used, ctx, rope base, eps,
// tied output, qkv bias, llama3 rope factors. The real ones are the published configs of those
// models.
const Shape kPresets[] = {
    {"tinyllama-1.1b", "llama", 32000, 2048, 22, 32, 4, 5632, 0, 0, 2048, 10000.0f, 1e-5f, false,
     false},
    {"llama-3.2-1b", "llama", 128256, 2048, 16, 32, 8, 8192, 0, 0, 131072, 500000.0f, 1e-5f, true,
     false, true},
    {"qwen2.5-0.5b", "qwen2", 151936, 896, 24, 14, 2, 4864, 0, 0, 32768, 1000000.0f, 1e-6f, true,
     true},
    {"llama-2-7b", "llama", 32000, 4096, 32, 32, 32, 11008, 0, 0, 4096, 10000.0f, 1e-5f, false,
     false},
    // The most used local model's shape: grouped heads (4 per K/V head) at head_dim 128.
    {"llama-3.1-8b", "llama", 128256, 4096, 32, 32, 8, 14336, 0, 0, 131072, 500000.0f, 1e-5f, false,
     false, true},
    // A small Mixtral-style MoE (8 experts, 2 per token) so MoE kernels are measurable on a
    // laptop: 8 experts is the case llama-quantize special-cases (attn_k/v in Q8_0).
    {"mixtral-8x-tiny", "llama", 32000, 1024, 8, 16, 4, 1536, 8, 2, 4096, 1000000.0f, 1e-5f, false,
     false},
    // Test-sized shapes, identical to ../shared's tiny-k, tiny-moe and tiny-qwen2 models.
    {"tiny", "llama", 512, 256, 2, 8, 2, 768, 0, 0, 512, 10000.0f, 1e-5f, false, false},
    {"tiny-moe", "llama", 512, 256, 2, 8, 2, 512, 4, 2, 512, 10000.0f, 1e-5f, false, false},
    {"tiny-qwen2", "qwen2", 512, 128, 2, 4, 2, 384, 0, 0, 512, 10000.0f, 1e-5f, false, true},
};

// llama_ftype ids (general.file_type), as llama-quantize writes them.
const Mix kMixes[] = {
    {"F32", TensorType::F32, 0},        {"F16", TensorType::F16, 1},
    {"BF16", TensorType::BF16, 32},     {"Q4_0", TensorType::Q4_0, 2},
    {"Q4_1", TensorType::Q4_1, 3},      {"Q5_0", TensorType::Q5_0, 8},
    {"Q5_1", TensorType::Q5_1, 9},      {"Q8_0", TensorType::Q8_0, 7},
    {"Q2_K", TensorType::Q2_K, 10},     {"Q3_K_S", TensorType::Q3_K, 11},
    {"Q3_K_M", TensorType::Q3_K, 12},   {"Q3_K_L", TensorType::Q3_K, 13},
    {"Q4_K_S", TensorType::Q4_K, 14},   {"Q4_K_M", TensorType::Q4_K, 15},
    {"Q5_K_S", TensorType::Q5_K, 16},   {"Q5_K_M", TensorType::Q5_K, 17},
    {"Q6_K", TensorType::Q6_K, 18},     {"IQ4_NL", TensorType::IQ4_NL, 25},
    {"IQ4_XS", TensorType::IQ4_XS, 30},
};

enum Ftype {
    kQ2_K = 10,
    kQ3_K_S,
    kQ3_K_M,
    kQ3_K_L,
    kQ4_K_S,
    kQ4_K_M,
    kQ5_K_S,
    kQ5_K_M,
    kIQ4_NL = 25,
    kIQ4_XS = 30
};

enum class Kind { TokenEmbd, Output, AttnQ, AttnK, AttnV, AttnOut, FfnGate, FfnUp, FfnDown, Other };

std::string upper(std::string_view s) {
    std::string u(s);
    for (char& c : u) c = (char)std::toupper((unsigned char)c);
    return u;
}

// llama-quantize's use_more_bits: the first and last eighth of the layers and every third
// one between get the bigger type in the _M mixes.
bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// The type llama-quantize (February 2025, no imatrix) gives a tensor; a transcription of
// llama_tensor_get_type for the mixes listed in kMixes.
TensorType choose_type(const Shape& s, const Mix& m, Kind kind, int il, int64_t ncols) {
    if (!type_traits(m.base).is_quantized || kind == Kind::Other) return m.base;
    const int f = m.ftype;
    const int gqa = s.n_head / std::max(1, s.n_kv_head);
    TensorType t = m.base;
    const bool is_output = kind == Kind::Output || (kind == Kind::TokenEmbd && s.tied_output);
    if (is_output) {
        if (ncols % QK_K != 0)
            t = TensorType::Q8_0;
        else if (t != TensorType::Q8_0)
            t = TensorType::Q6_K;
    } else if (kind == Kind::AttnV) {
        if (f == kQ2_K)
            t = gqa >= 4 ? TensorType::Q4_K : TensorType::Q3_K;
        else if (f == kQ3_K_M)
            t = il < 2 ? TensorType::Q5_K : TensorType::Q4_K;
        else if (f == kQ3_K_L)
            t = TensorType::Q5_K;
        else if ((f == kIQ4_NL || f == kIQ4_XS) && gqa >= 4)
            t = TensorType::Q5_K;
        else if ((f == kQ4_K_M || f == kQ5_K_M) && use_more_bits(il, s.n_layer))
            t = TensorType::Q6_K;
        else if (f == kQ4_K_S && il < 4)
            t = TensorType::Q5_K;
        if (s.n_expert == 8) t = TensorType::Q8_0;
    } else if (kind == Kind::AttnK) {
        if (s.n_expert == 8) t = TensorType::Q8_0;
    } else if (kind == Kind::FfnDown) {
        const int n = s.n_layer;
        if (f == kQ2_K)
            t = TensorType::Q3_K;
        else if (f == kQ3_K_M)
            t = il < n / 16 ? TensorType::Q5_K : TensorType::Q4_K;
        else if (f == kQ3_K_L)
            t = TensorType::Q5_K;
        else if (f == kQ4_K_M)
            t = use_more_bits(il, n) ? TensorType::Q6_K : t;
        else if (il < n / 8 && (f == kIQ4_NL || f == kIQ4_XS))
            t = TensorType::Q5_K;
        else if (f == kQ5_K_M && use_more_bits(il, n))
            t = TensorType::Q6_K;
        else if (f == kQ4_K_S && il < n / 8)
            t = TensorType::Q5_K;
    } else if (kind == Kind::AttnOut) {
        if (s.n_expert == 8) {
            if (f == kQ2_K || f == kQ3_K_S || f == kQ3_K_M || f == kIQ4_NL || f == kQ4_K_S ||
                f == kQ4_K_M || f == kIQ4_XS)
                t = TensorType::Q5_K;
        } else if (f == kQ2_K) {
            t = TensorType::Q3_K;
        } else if (f == kQ3_K_M) {
            t = TensorType::Q4_K;
        } else if (f == kQ3_K_L) {
            t = TensorType::Q5_K;
        }
    }
    // Rows that are not a multiple of the super-block fall back as llama-quantize does
    // (Qwen2.5-0.5B's 896-wide rows, for example).
    if (ncols % type_traits(t).block_size != 0) {
        switch (t) {
            case TensorType::Q2_K:
            case TensorType::Q3_K:
            case TensorType::IQ4_XS:
                t = TensorType::IQ4_NL;
                break;
            case TensorType::Q4_K:
                t = TensorType::Q5_0;
                break;
            case TensorType::Q5_K:
                t = TensorType::Q5_1;
                break;
            case TensorType::Q6_K:
                t = TensorType::Q8_0;
                break;
            default:
                break;
        }
        if (ncols % type_traits(t).block_size != 0) t = TensorType::F16;
    }
    return t;
}

// splitmix64: a fast, well-mixed generator; one call per weight is plenty for random
// weights, and seeding per row makes the output independent of the thread count.
inline uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// n approximately normal values: the sum of four 16-bit uniforms (Irwin-Hall), which is
// close to Gaussian, bounded, and far cheaper than Box-Muller.
void fill_normal(float* x, int64_t n, float stddev, uint64_t seed) {
    uint64_t st = seed;
    constexpr float kMean = 2.0f * 65535.0f;
    const float scale = stddev / (65536.0f * 0.57735027f);  // sd of the sum is 65536 * sqrt(1/3)
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = splitmix64(st);
        const float sum = (float)(r & 0xFFFF) + (float)((r >> 16) & 0xFFFF) +
                          (float)((r >> 32) & 0xFFFF) + (float)(r >> 48);
        x[i] = (sum - kMean) * scale;
    }
}

// Llama 3.1+'s RoPE frequency factors as convert_hf_to_gguf.py writes them (factor 32,
// low/high frequency factors 1 and 4, original context 8192): a real file's tensor, and
// lokal and llama.cpp both apply it.
void llama3_rope_factors(float* out, int64_t n, int head_dim, float base) {
    const double factor = 32, low = 1, high = 4, old_ctx = 8192;
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (int64_t i = 0; i < n; ++i) {
        const double freq = 1.0 / std::pow((double)base, (double)(2 * i) / head_dim);
        const double wavelen = 2 * M_PI / freq;
        if (wavelen < high_wavelen) {
            out[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            out[i] = (float)factor;
        } else {
            const double smooth = (old_ctx / wavelen - low) / (high - low);
            out[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

// A SentencePiece-style placeholder vocabulary that both lokal and llama.cpp load: the
// three specials, the 256 byte tokens, then unique filler pieces.
void placeholder_vocab(gguf::Writer& w, int n_vocab) {
    if (n_vocab < 3 + 256)
        throw std::invalid_argument("synth: a placeholder vocabulary needs >= 259 tokens");
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    tokens.reserve(n_vocab);
    const auto add = [&](std::string t, int32_t type) {
        scores.push_back(-(float)tokens.size());
        tokens.push_back(std::move(t));
        types.push_back(type);
    };
    add("<unk>", 2);  // UNKNOWN
    add("<s>", 3);    // CONTROL
    add("</s>", 3);
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b)
        add(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 6);  // BYTE
    for (int i = 0; (int)tokens.size() < n_vocab; ++i) {
        std::string piece = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start mark
        for (int k = i;; k = k / 26 - 1) {
            piece.insert(3, 1, (char)('a' + k % 26));
            if (k < 26) break;
        }
        add(std::move(piece), 1);  // NORMAL
    }
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string("tokenizer.ggml.pre", "default");
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    w.set_array_f32("tokenizer.ggml.scores", scores);
    w.set_array_i32("tokenizer.ggml.token_type", types);
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    w.set_u32("tokenizer.ggml.unknown_token_id", 0);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
    w.set_bool("tokenizer.ggml.add_eos_token", false);
}

// Copies every tokenizer.* key of a vocabulary GGUF; returns its token count.
int copy_vocab(gguf::Writer& w, const std::string& path) {
    auto f = gguf::File::open(path);
    const gguf::Value* tokens = f->get_array("tokenizer.ggml.tokens");
    if (!tokens || tokens->count == 0)
        throw std::invalid_argument("synth: " + path + " has no tokenizer.ggml.tokens");
    for (const gguf::KeyValue& kv : f->metadata())
        if (kv.key.rfind("tokenizer.", 0) == 0) w.copy_value(kv.key, kv.value);
    return (int)tokens->count;
}

class FileSink {
  public:
    explicit FileSink(const std::string& path) : path_(path), tmp_(path + ".tmp.XXXXXX") {
        fd_ = mkstemp(tmp_.data());
        if (fd_ < 0) fail("cannot create a temporary file beside it");
    }
    ~FileSink() {
        if (fd_ >= 0) {
            ::close(fd_);
            ::unlink(tmp_.c_str());
        }
    }
    void write(const void* p, size_t n) {
        const char* b = static_cast<const char*>(p);
        while (n > 0) {
            const ssize_t w = ::write(fd_, b, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                fail("write failed");
            }
            b += w, n -= (size_t)w, bytes_ += (uint64_t)w;
        }
    }
    // No fsync: a benchmark file is regenerated if lost; the rename alone keeps a
    // half-written file from ever carrying the final name.
    void commit() {
        if (fchmod(fd_, 0644) != 0) fail("chmod failed");
        if (::close(fd_) != 0) {
            fd_ = -1;
            ::unlink(tmp_.c_str());
            fail("close failed");
        }
        fd_ = -1;
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
            ::unlink(tmp_.c_str());
            fail("rename failed");
        }
    }
    uint64_t bytes() const { return bytes_; }

  private:
    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("synth: " + path_ + ": " + what + ": " + std::strerror(errno));
    }
    std::string path_, tmp_;
    int fd_ = -1;
    uint64_t bytes_ = 0;
};

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
    const size_t n = out.size();
    out.resize(n + sizeof(T));
    std::memcpy(out.data() + n, &v, sizeof(T));
}

constexpr uint64_t kAlign = 32;  // GGUF's default alignment (no general.alignment key needed)

uint64_t align_up(uint64_t x) {
    return (x + kAlign - 1) / kAlign * kAlign;
}

}  // namespace

std::optional<Shape> find_preset(std::string_view name) {
    for (const Shape& s : kPresets)
        if (s.name == name) return s;
    return std::nullopt;
}

std::vector<std::string> preset_names() {
    std::vector<std::string> v;
    for (const Shape& s : kPresets) v.push_back(s.name);
    return v;
}

std::optional<Mix> find_mix(std::string_view name) {
    std::string u = upper(name);
    // llama-quantize's aliases for the medium K mixes.
    if (u == "Q3_K" || u == "Q4_K" || u == "Q5_K") u += "_M";
    for (const Mix& m : kMixes)
        if (m.name == u) return m;
    return std::nullopt;
}

std::vector<std::string> mix_names() {
    std::vector<std::string> v;
    for (const Mix& m : kMixes) v.push_back(m.name);
    return v;
}

std::vector<TensorPlan> plan_tensors(const Shape& s, const Mix& mix) {
    const int64_t dim = s.dim, hd = s.dim / s.n_head, qd = hd * s.n_head, kvd = hd * s.n_kv_head;
    const int64_t ff = s.n_ff, nv = s.n_vocab, ne = s.n_expert;
    std::vector<TensorPlan> out;
    const auto add = [&](std::string name, Kind kind, int il, std::vector<int64_t> shape) {
        TensorPlan p;
        p.name = std::move(name);
        p.ne = std::move(shape);
        const bool vec = p.ne.size() == 1;
        p.init = vec && p.name.find("norm") != std::string::npos ? TensorPlan::Init::Ones
                                                                 : TensorPlan::Init::Normal;
        if (p.name == "rope_freqs.weight") p.init = TensorPlan::Init::Llama3RopeFactors;
        // 1-D tensors and the MoE router stay f32, as llama-quantize leaves them.
        p.type =
            vec || kind == Kind::Other ? TensorType::F32 : choose_type(s, mix, kind, il, p.ne[0]);
        uint64_t rows = 1;
        for (size_t d = 1; d < p.ne.size(); ++d) rows *= (uint64_t)p.ne[d];
        p.bytes = row_size(p.type, p.ne[0]) * rows;
        out.push_back(std::move(p));
    };
    add("token_embd.weight", Kind::TokenEmbd, 0, {dim, nv});
    add("output_norm.weight", Kind::Other, 0, {dim});
    if (!s.tied_output) add("output.weight", Kind::Output, 0, {dim, nv});
    if (s.llama3_rope) add("rope_freqs.weight", Kind::Other, 0, {hd / 2});
    for (int il = 0; il < s.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        add(p + "attn_norm.weight", Kind::Other, il, {dim});
        add(p + "attn_q.weight", Kind::AttnQ, il, {dim, qd});
        if (s.qkv_bias) add(p + "attn_q.bias", Kind::Other, il, {qd});
        add(p + "attn_k.weight", Kind::AttnK, il, {dim, kvd});
        if (s.qkv_bias) add(p + "attn_k.bias", Kind::Other, il, {kvd});
        add(p + "attn_v.weight", Kind::AttnV, il, {dim, kvd});
        if (s.qkv_bias) add(p + "attn_v.bias", Kind::Other, il, {kvd});
        add(p + "attn_output.weight", Kind::AttnOut, il, {qd, dim});
        add(p + "ffn_norm.weight", Kind::Other, il, {dim});
        if (ne == 0) {
            add(p + "ffn_gate.weight", Kind::FfnGate, il, {dim, ff});
            add(p + "ffn_up.weight", Kind::FfnUp, il, {dim, ff});
            add(p + "ffn_down.weight", Kind::FfnDown, il, {ff, dim});
        } else {
            add(p + "ffn_gate_inp.weight", Kind::Other, il, {dim, ne});
            add(p + "ffn_gate_exps.weight", Kind::FfnGate, il, {dim, ff, ne});
            add(p + "ffn_up_exps.weight", Kind::FfnUp, il, {dim, ff, ne});
            add(p + "ffn_down_exps.weight", Kind::FfnDown, il, {ff, dim, ne});
        }
    }
    return out;
}

Summary write_model(const Options& o, const std::string& path) {
    Shape s = o.shape;
    if (s.dim <= 0 || s.n_layer <= 0 || s.n_head <= 0 || s.n_kv_head <= 0 || s.n_ff <= 0 ||
        s.dim % s.n_head != 0 || s.n_head % s.n_kv_head != 0)
        throw std::invalid_argument("synth: inconsistent shape for preset '" + s.name + "'");
    if (!(o.stddev > 0))
        throw std::invalid_argument("synth: the weight standard deviation must be positive");
    if (o.mix.base != TensorType::F32 && !can_quantize(o.mix.base))
        throw std::invalid_argument(std::string("synth: cannot write tensors of type ") +
                                    type_name(o.mix.base));

    gguf::Writer w;
    const std::string a = s.arch + ".";
    w.set_string("general.architecture", s.arch);
    w.set_string("general.name", "synth-" + s.name);
    w.set_u32("general.file_type", (uint32_t)o.mix.ftype);
    w.set_u32("general.quantization_version", 2);
    w.set_u32(a + "context_length", (uint32_t)s.n_ctx);
    w.set_u32(a + "embedding_length", (uint32_t)s.dim);
    w.set_u32(a + "block_count", (uint32_t)s.n_layer);
    w.set_u32(a + "feed_forward_length", (uint32_t)s.n_ff);
    w.set_u32(a + "rope.dimension_count", (uint32_t)(s.dim / s.n_head));
    w.set_u32(a + "attention.head_count", (uint32_t)s.n_head);
    w.set_u32(a + "attention.head_count_kv", (uint32_t)s.n_kv_head);
    w.set_f32(a + "attention.layer_norm_rms_epsilon", s.rms_eps);
    w.set_f32(a + "rope.freq_base", s.rope_base);
    if (s.n_expert > 0) {
        w.set_u32(a + "expert_count", (uint32_t)s.n_expert);
        w.set_u32(a + "expert_used_count", (uint32_t)s.n_expert_used);
    }
    if (!o.vocab_path.empty())
        s.n_vocab = copy_vocab(w, o.vocab_path);
    else
        placeholder_vocab(w, s.n_vocab);
    w.set_u32(a + "vocab_size", (uint32_t)s.n_vocab);

    const std::vector<TensorPlan> plan = plan_tensors(s, o.mix);

    // The metadata as gguf::Writer encodes it (a file with no tensors); its key/value
    // section ends where the last value's bytes end.
    std::vector<uint8_t> head = w.to_bytes();
    {
        auto parsed = gguf::File::from_memory(head.data(), head.size());
        const auto& kv = parsed->metadata();
        const size_t end =
            kv.empty()
                ? 24
                : (size_t)(kv.back().value.raw.data() + kv.back().value.raw.size() - head.data());
        head.resize(end);
    }
    const uint64_t n_tensors = plan.size();
    std::memcpy(head.data() + 8, &n_tensors, sizeof n_tensors);  // after magic and version
    uint64_t offset = 0;
    for (const TensorPlan& p : plan) {
        put<uint64_t>(head, p.name.size());
        head.insert(head.end(), p.name.begin(), p.name.end());
        put<uint32_t>(head, (uint32_t)p.ne.size());
        for (int64_t d : p.ne) put<uint64_t>(head, (uint64_t)d);
        put<uint32_t>(head, (uint32_t)p.type);
        put<uint64_t>(head, offset);
        offset = align_up(offset + p.bytes);
    }
    head.resize(align_up(head.size()), 0);

    FileSink out(path);
    out.write(head.data(), head.size());

    ThreadPool pool(o.n_threads);
    const int nt = pool.n_threads();
    std::vector<std::vector<float>> scratch((size_t)nt);
    std::vector<uint8_t> buf;
    const uint8_t zeros[kAlign] = {};
    Summary sum;
    uint64_t base_seed = o.seed;
    const uint64_t tensor_seed0 = splitmix64(base_seed);
    for (size_t ti = 0; ti < plan.size(); ++ti) {
        const TensorPlan& p = plan[ti];
        const int64_t ncols = p.ne[0];
        int64_t nrows = 1;
        for (size_t d = 1; d < p.ne.size(); ++d) nrows *= p.ne[d];
        const size_t rb = row_size(p.type, ncols);
        // Chunks of about 8 MiB of output keep memory flat whatever the model size.
        const int64_t chunk =
            std::max<int64_t>(nt, (int64_t)((8u << 20) / std::max<size_t>(rb, 1)));
        uint64_t tseed = tensor_seed0 + ti * 0xD1B54A32D192ED03ull;
        tseed = splitmix64(tseed);
        for (int64_t r0 = 0; r0 < nrows; r0 += chunk) {
            const int64_t n = std::min(chunk, nrows - r0);
            buf.resize((size_t)n * rb);
            pool.parallel_for(n, [&](int64_t b, int64_t e, int tid) {
                std::vector<float>& x = scratch[(size_t)tid];
                x.resize((size_t)ncols);
                for (int64_t r = b; r < e; ++r) {
                    if (p.init == TensorPlan::Init::Ones)
                        std::fill(x.begin(), x.end(), 1.0f);
                    else if (p.init == TensorPlan::Init::Llama3RopeFactors)
                        llama3_rope_factors(x.data(), ncols, s.dim / s.n_head, s.rope_base);
                    else
                        fill_normal(x.data(), ncols, o.stddev,
                                    tseed ^ ((uint64_t)(r0 + r) * 0x9E3779B97F4A7C15ull));
                    uint8_t* dst = buf.data() + (size_t)r * rb;
                    if (p.type == TensorType::F32)
                        std::memcpy(dst, x.data(), rb);
                    else
                        quantize_row(p.type, x.data(), dst, ncols, nullptr);
                }
            });
            out.write(buf.data(), buf.size());
        }
        const uint64_t pad = align_up(p.bytes) - p.bytes;
        if (pad) out.write(zeros, pad);
        sum.n_params += (uint64_t)ncols * (uint64_t)nrows;
        sum.data_bytes += p.bytes;
        if (o.on_tensor) o.on_tensor(ti, plan.size(), p);
    }
    sum.file_bytes = out.bytes();
    sum.n_vocab = s.n_vocab;
    sum.n_tensors = plan.size();
    out.commit();
    return sum;
}

}  // namespace lokal::synth
