// Hostile input: the malformed corpus, truncation at every byte, and random corruption must
// all end in a gguf::Error with a one-line message (and never a crash; see gguf_asan).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace lokal::gguf {
namespace {

namespace fs = std::filesystem;

const fs::path kCorpus = fs::path(LOKAL_SOURCE_DIR) / "tests" / "gguf" / "malformed";

std::vector<uint8_t> read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Parses `bytes`; returns the error message, or nullopt when it parsed.
std::optional<std::string> parse_error(const std::vector<uint8_t>& bytes) {
    try {
        auto f = File::from_memory(bytes.data(), bytes.size());
        // Touch everything a caller might, so a sanitizer sees any bad pointer.
        size_t sum = 0;
        for (const KeyValue& kv : f->metadata()) {
            sum += kv.value.raw.size() + kv.value.str.size();
            for (std::string_view s : kv.value.strings) sum += s.size();
            if (kv.value.type == ValueType::ARRAY && kv.value.elem_type != ValueType::STRING &&
                kv.value.count)
                sum += (size_t)kv.value.elem_int(kv.value.count - 1);
        }
        for (const TensorInfo& t : f->tensors()) sum += t.data[0] + t.data[t.n_bytes - 1];
        (void)sum;
        return std::nullopt;
    } catch (const Error& e) {
        return std::string(e.what());
    }
}

void expect_good_message(const std::string& m) {
    EXPECT_FALSE(m.empty());
    EXPECT_EQ(m.rfind("gguf: ", 0), 0u) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_LT(m.size(), 400u) << m;
}

std::map<std::string, std::string> expected_messages() {
    std::map<std::string, std::string> out;
    std::ifstream in(kCorpus / "EXPECTED.txt");
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        size_t tab = line.find('\t');
        if (tab == std::string::npos) continue;
        out[line.substr(0, tab)] = line.substr(tab + 1);
    }
    return out;
}

TEST(GgufMalformed, CorpusFailsForTheIntendedReason) {
    auto expected = expected_messages();
    ASSERT_GE(expected.size(), 40u) << "missing " << (kCorpus / "EXPECTED.txt");
    size_t seen = 0;
    for (const auto& e : fs::directory_iterator(kCorpus)) {
        if (e.path().extension() != ".gguf") continue;
        const std::string name = e.path().filename().string();
        SCOPED_TRACE(name);
        ++seen;
        auto it = expected.find(name);
        ASSERT_NE(it, expected.end()) << "not listed in EXPECTED.txt";
        auto err = parse_error(read_all(e.path()));
        ASSERT_TRUE(err.has_value()) << "parsed without error";
        expect_good_message(*err);
        EXPECT_NE(err->find(it->second), std::string::npos)
            << "message: " << *err << "\nwanted: " << it->second;
        // Through open() too: same failure, with the path in the message.
        try {
            File::open(e.path().string());
            ADD_FAILURE() << "open() did not throw";
        } catch (const Error& ex) {
            std::string m = ex.what();
            expect_good_message(m);
            EXPECT_NE(m.find(name), std::string::npos) << m;
        }
    }
    EXPECT_EQ(seen, expected.size());
}

// The fuzzer's valid seeds (hand-built by make_malformed.py, independent of our Writer).
TEST(GgufMalformed, HandBuiltSeedsParse) {
    const fs::path seeds = kCorpus.parent_path() / "seeds";
    auto t = File::open((seeds / "tensors.gguf").string());
    EXPECT_EQ(*t->get_uint("a.u8"), 7u);
    EXPECT_EQ(*t->get_int("a.i8"), -1);
    EXPECT_EQ(*t->get_uint("a.u16"), 0x201u);
    EXPECT_EQ(*t->get_int("a.i16"), -2);
    EXPECT_EQ(*t->get_int("a.i32"), -7);
    EXPECT_EQ(*t->get_float("a.f32"), 0.5);
    EXPECT_EQ(*t->get_bool("a.bool"), true);
    EXPECT_EQ(*t->get_uint("a.u64"), 9u);
    EXPECT_EQ(*t->get_int("a.i64"), -9);
    EXPECT_EQ(*t->get_float("a.f64"), 0.25);
    EXPECT_EQ(t->get_array("a.strs")->strings, (std::vector<std::string_view>{"ab", ""}));
    EXPECT_EQ(t->get_array("a.i32s")->elem_int(1), -1);
    ASSERT_EQ(t->tensors().size(), 2u);
    EXPECT_EQ(t->tensors()[0].ne[1], 2);
    EXPECT_EQ(t->tensors()[0].data[5], 5);
    EXPECT_EQ(t->find_tensor("q")->n_bytes, 34u);
    EXPECT_EQ(t->find_tensor("q")->data[33], 0x11);
    auto m = File::open((seeds / "metadata_only.gguf").string());
    EXPECT_EQ(m->get_array("tokenizer.ggml.tokens")->strings[2], "c");
    auto v2 = File::open((seeds / "v2_align64.gguf").string());
    EXPECT_EQ(v2->version(), 2u);
    EXPECT_EQ(v2->alignment(), 64u);
    EXPECT_EQ(v2->data_offset(), 128u);
    EXPECT_EQ(v2->tensors()[0].data[63], 63);
}

// A small file with every value type and a few tensors.
std::vector<uint8_t> small_valid_file(uint64_t alignment) {
    static std::vector<float> f32(64 * 2);
    static std::vector<uint8_t> q8(34 * 2 * 3);
    for (size_t i = 0; i < f32.size(); ++i) f32[i] = (float)i * 0.25f;
    for (size_t i = 0; i < q8.size(); ++i) q8[i] = (uint8_t)(i * 7);
    Writer w;
    w.set_string("general.architecture", "llama");
    if (alignment != 32) w.set_alignment(alignment);
    w.set_u8("a.u8", 1);
    w.set_i8("a.i8", -1);
    w.set_u16("a.u16", 2);
    w.set_i16("a.i16", -2);
    w.set_u32("a.u32", 3);
    w.set_i32("a.i32", -3);
    w.set_u64("a.u64", 4);
    w.set_i64("a.i64", -4);
    w.set_f32("a.f32", 0.5f);
    w.set_f64("a.f64", 0.25);
    w.set_bool("a.bool", true);
    w.set_array_string("a.strs", {"one", "", "three"});
    w.set_array_f32("a.f32s", {1.f, 2.f});
    w.set_array_i32("a.i32s", {-5});
    w.set_array_u32("a.u32s", {});
    w.add_tensor("q", TensorType::Q8_0, {64, 3}, q8.data());
    w.add_tensor("f", TensorType::F32, {64, 2}, f32.data());
    return w.to_bytes();
}

TEST(GgufMalformed, TruncationAtEveryByte) {
    for (uint64_t alignment : {32u, 8u}) {
        SCOPED_TRACE(alignment);
        const std::vector<uint8_t> full = small_valid_file(alignment);
        auto f = File::from_memory(full.data(), full.size());
        ASSERT_EQ(f->tensors().size(), 2u);
        // Bytes past the end of the last tensor's data are padding: cutting them is harmless.
        uint64_t needed = 0;
        for (const TensorInfo& t : f->tensors())
            needed = std::max(needed, f->data_offset() + t.offset + t.n_bytes);
        for (size_t n = 0; n <= full.size(); ++n) {
            std::vector<uint8_t> cut(full.begin(), full.begin() + (ptrdiff_t)n);
            auto err = parse_error(cut);
            if (n < needed) {
                ASSERT_TRUE(err.has_value()) << "prefix of " << n << " bytes parsed";
                expect_good_message(*err);
            } else {
                EXPECT_FALSE(err.has_value()) << n << ": " << *err;
            }
        }
    }
    // A metadata-only file is valid once its last value is complete.
    Writer w;
    w.set_string("general.architecture", "x");
    w.set_array_string("tokenizer.ggml.tokens", {"a", "bc"});
    const std::vector<uint8_t> full = w.to_bytes();
    for (size_t n = 0; n < full.size(); ++n) {
        std::vector<uint8_t> cut(full.begin(), full.begin() + (ptrdiff_t)n);
        auto err = parse_error(cut);
        // Trailing padding may be cut; the last string ends at the last non-padding byte.
        if (!err) {
            EXPECT_GE(n, full.size() - 31);
        }
    }
}

TEST(GgufMalformed, RandomCorruptionNeverCrashes) {
    const std::vector<uint8_t> base = small_valid_file(32);
    std::mt19937_64 rng(12345);
    size_t failures = 0;
    const int kIters = 20000;
    for (int it = 0; it < kIters; ++it) {
        std::vector<uint8_t> m = base;
        const int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const size_t pos = rng() % m.size();
            switch (rng() % 4) {
                case 0:
                    m[pos] = (uint8_t)rng();
                    break;
                case 1:
                    m[pos] ^= (uint8_t)(1u << (rng() % 8));
                    break;
                case 2: {  // a plausible-looking big little-endian integer
                    uint64_t v = rng() >> (rng() % 64);
                    std::memcpy(m.data() + pos, &v, std::min<size_t>(8, m.size() - pos));
                    break;
                }
                case 3:
                    m.resize(pos);
                    break;
            }
            if (m.empty()) break;
        }
        auto err = parse_error(m);
        if (err) {
            ++failures;
            expect_good_message(*err);
            if (::testing::Test::HasFailure()) return;
        }
    }
    EXPECT_GT(failures, (size_t)kIters / 4);
}

TEST(GgufMalformed, FromMemoryEdgeCases) {
    EXPECT_THROW(File::from_memory(nullptr, 0), Error);
    EXPECT_THROW(File::from_memory(nullptr, 100), Error);
    const uint8_t header_only[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0,
                                   0,   0,   0,   0,   0, 0, 0, 0, 0, 0, 0, 0};
    auto f = File::from_memory(header_only, sizeof header_only);  // empty but valid
    EXPECT_TRUE(f->metadata().empty());
    EXPECT_TRUE(f->tensors().empty());
    EXPECT_EQ(f->alignment(), 32u);
    uint8_t v2[sizeof header_only];
    std::memcpy(v2, header_only, sizeof v2);
    v2[4] = 2;
    EXPECT_EQ(File::from_memory(v2, sizeof v2)->version(), 2u);
}

}  // namespace
}  // namespace lokal::gguf
