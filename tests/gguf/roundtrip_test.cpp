// Writer tests: typed values, in-place replacement, alignment, and read -> write -> read
// round trips of every shared file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "shared_path.h"

namespace lokal::gguf {
namespace {

namespace fs = std::filesystem;

// A parsed buffer that owns the bytes (from_memory() borrows them).
struct Parsed {
    std::vector<uint8_t> bytes;
    std::unique_ptr<File> file;
    const File* operator->() const { return file.get(); }
    const File& operator*() const { return *file; }
};

Parsed reread(std::vector<uint8_t> bytes) {
    Parsed p{std::move(bytes), nullptr};
    p.file = File::from_memory(p.bytes.data(), p.bytes.size());
    return p;
}

// Copies every key and tensor of `f` into a writer.
void copy_all(const File& f, Writer& w) {
    for (const KeyValue& kv : f.metadata()) w.copy_value(kv.key, kv.value);
    for (const TensorInfo& t : f.tensors())
        w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data);
}

void expect_same(const File& a, const File& b) {
    EXPECT_EQ(a.alignment(), b.alignment());
    ASSERT_EQ(a.metadata().size(), b.metadata().size());
    for (size_t i = 0; i < a.metadata().size(); ++i) {
        const KeyValue& x = a.metadata()[i];
        const KeyValue& y = b.metadata()[i];
        SCOPED_TRACE(x.key);
        EXPECT_EQ(x.key, y.key);
        EXPECT_EQ(x.value.type, y.value.type);
        EXPECT_EQ(x.value.u, y.value.u);
        EXPECT_EQ(x.value.i, y.value.i);
        EXPECT_EQ(std::memcmp(&x.value.f, &y.value.f, sizeof(double)), 0);
        EXPECT_EQ(x.value.str, y.value.str);
        EXPECT_EQ(x.value.elem_type, y.value.elem_type);
        EXPECT_EQ(x.value.count, y.value.count);
        EXPECT_EQ(x.value.strings, y.value.strings);
        ASSERT_EQ(x.value.raw.size(), y.value.raw.size());
        EXPECT_TRUE(std::equal(x.value.raw.begin(), x.value.raw.end(), y.value.raw.begin()));
    }
    ASSERT_EQ(a.tensors().size(), b.tensors().size());
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        const TensorInfo& x = a.tensors()[i];
        const TensorInfo& y = b.tensors()[i];
        SCOPED_TRACE(x.name);
        EXPECT_EQ(x.name, y.name);
        EXPECT_EQ(x.type, y.type);
        EXPECT_EQ(x.n_dims, y.n_dims);
        for (int d = 0; d < 4; ++d) EXPECT_EQ(x.ne[d], y.ne[d]);
        EXPECT_EQ(x.n_bytes, y.n_bytes);
        EXPECT_EQ(std::memcmp(x.data, y.data, x.n_bytes), 0);
    }
}

TEST(GgufWriter, RoundTripsEverySharedFile) {
    for (const char* sub : {"models", "vocab"}) {
        for (const auto& e : fs::directory_iterator(test::shared_path(sub))) {
            if (e.path().extension() != ".gguf") continue;
            SCOPED_TRACE(e.path().string());
            auto f = File::open(e.path().string());
            Writer w;
            copy_all(*f, w);
            std::vector<uint8_t> bytes = w.to_bytes();
            auto g = reread(bytes);
            EXPECT_EQ(g->version(), 3u);
            expect_same(*f, *g);
            if (!f->tensors().empty()) {
                // The reference writer lays files out exactly as we do: same offsets.
                for (size_t i = 0; i < f->tensors().size(); ++i)
                    EXPECT_EQ(f->tensors()[i].offset, g->tensors()[i].offset);
                EXPECT_EQ(f->data_offset(), g->data_offset());
                // ... so much so that the copy is the original, byte for byte.
                EXPECT_TRUE(bytes.size() == f->file_size() &&
                            std::memcmp(bytes.data(), f->tensors()[0].data - f->data_offset(),
                                        bytes.size()) == 0);
            }
        }
    }
}

TEST(GgufWriter, WriteToDiskAtomically) {
    auto f = File::open(test::shared_path("models/stories260K.gguf"));
    Writer w;
    copy_all(*f, w);
    w.set_string("general.name", "copied");  // replaces in place
    const fs::path dir =
        fs::temp_directory_path() / ("lokal_gguf_test_" + std::to_string(getpid()));
    fs::create_directories(dir);
    const std::string out = (dir / "copy.gguf").string();
    w.write(out);
    w.write(out);  // overwriting an existing file works too
    {
        auto g = File::open(out);
        EXPECT_EQ(*g->get_string("general.name"), "copied");
        EXPECT_EQ(g->metadata()[5].key, "general.name");  // position kept
        EXPECT_EQ(g->tensors().size(), f->tensors().size());
        for (size_t i = 0; i < f->tensors().size(); ++i) {
            EXPECT_EQ(
                std::memcmp(f->tensors()[i].data, g->tensors()[i].data, f->tensors()[i].n_bytes),
                0);
        }
    }
    // No temporary files are left behind.
    EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
    EXPECT_THROW(w.write((dir / "missing_subdir" / "x.gguf").string()), Error);
    fs::remove_all(dir);
}

TEST(GgufWriter, TypedValuesRoundTrip) {
    Writer w;
    w.set_u8("u8", 255);
    w.set_i8("i8", -128);
    w.set_u16("u16", 65535);
    w.set_i16("i16", -32768);
    w.set_u32("u32", 4000000000u);
    w.set_i32("i32", -2000000000);
    w.set_u64("u64", std::numeric_limits<uint64_t>::max());
    w.set_i64("i64", std::numeric_limits<int64_t>::min());
    w.set_f32("f32", -0.5f);
    w.set_f64("f64", 1e300);
    w.set_bool("t", true);
    w.set_bool("f", false);
    w.set_string("s", std::string_view("a\0b", 3));
    w.set_string("empty", "");
    w.set_array_string("as", {"x", "", "yz"});
    w.set_array_f32("af", {1.5f, -2.f});
    w.set_array_i32("ai", {-1, 7});
    w.set_array_u32("au", {});
    auto f = reread(w.to_bytes());
    ASSERT_EQ(f->metadata().size(), 18u);
    EXPECT_EQ(f->metadata()[0].key, "u8");
    EXPECT_EQ(f->metadata()[17].key, "au");

    EXPECT_EQ(*f->get_uint("u8"), 255u);
    EXPECT_EQ(*f->get_int("i8"), -128);
    EXPECT_EQ(*f->get_uint("u16"), 65535u);
    EXPECT_EQ(*f->get_int("i16"), -32768);
    EXPECT_EQ(*f->get_uint("u32"), 4000000000u);
    EXPECT_EQ(*f->get_int("u32"), 4000000000);
    EXPECT_EQ(*f->get_int("i32"), -2000000000);
    EXPECT_EQ(*f->get_uint("u64"), std::numeric_limits<uint64_t>::max());
    EXPECT_EQ(*f->get_int("i64"), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(*f->get_float("f32"), -0.5);
    EXPECT_EQ(*f->get_float("f64"), 1e300);
    EXPECT_EQ(*f->get_float("i32"), -2e9);
    EXPECT_EQ(*f->get_bool("t"), true);
    EXPECT_EQ(*f->get_bool("f"), false);
    EXPECT_EQ(*f->get_string("s"), std::string_view("a\0b", 3));
    EXPECT_EQ(*f->get_string("empty"), "");
    EXPECT_EQ(f->find("u8")->type, ValueType::UINT8);
    EXPECT_TRUE(f->find("i16")->is_integer());
    EXPECT_TRUE(f->find("f32")->is_float());
    EXPECT_FALSE(f->find("t")->is_integer());

    const Value* as = f->get_array("as");
    ASSERT_NE(as, nullptr);
    EXPECT_EQ(as->elem_type, ValueType::STRING);
    EXPECT_EQ(as->strings, (std::vector<std::string_view>{"x", "", "yz"}));
    const Value* af = f->get_array("af");
    EXPECT_EQ(af->count, 2u);
    EXPECT_EQ(af->elem_float(0), 1.5);
    EXPECT_EQ(af->elem_int(1), -2);
    const Value* ai = f->get_array("ai");
    EXPECT_EQ(ai->elem_int(0), -1);
    EXPECT_EQ(ai->elem_float(1), 7.0);
    EXPECT_EQ(f->get_array("au")->count, 0u);
    EXPECT_EQ(f->get_array("au")->elem_type, ValueType::UINT32);

    // Getter type errors.
    EXPECT_THROW(f->get_uint("i8"), Error);   // negative
    EXPECT_THROW(f->get_int("u64"), Error);   // does not fit int64
    EXPECT_THROW(f->get_uint("f32"), Error);  // float
    EXPECT_THROW(f->get_int("t"), Error);     // bool is not an integer
    EXPECT_THROW(f->get_float("s"), Error);
    EXPECT_THROW(f->get_bool("u8"), Error);
    EXPECT_THROW(f->get_string("as"), Error);
    EXPECT_THROW(f->get_array("s"), Error);
}

TEST(GgufWriter, CopyValueFromDecodedFields) {
    // Values built by hand (no raw bytes) are encoded from their fields.
    Writer w;
    Value v;
    v.type = ValueType::INT16;
    v.i = -7;
    w.copy_value("i16", v);
    Value s;
    s.type = ValueType::ARRAY;
    s.elem_type = ValueType::STRING;
    s.count = 2;
    s.strings = {"p", "qr"};
    w.copy_value("arr", s);
    const uint16_t nums[3] = {1, 2, 65535};
    Value n;
    n.type = ValueType::ARRAY;
    n.elem_type = ValueType::UINT16;
    n.count = 3;
    n.elems = reinterpret_cast<const uint8_t*>(nums);
    w.copy_value("nums", n);
    auto f = reread(w.to_bytes());
    EXPECT_EQ(*f->get_int("i16"), -7);
    EXPECT_EQ(f->get_array("arr")->strings[1], "qr");
    EXPECT_EQ(f->get_array("nums")->elem_int(2), 65535);
    // And values read from a file are copied byte for byte.
    Writer w2;
    for (const KeyValue& kv : f->metadata()) w2.copy_value(kv.key, kv.value);
    EXPECT_EQ(w2.to_bytes(), w.to_bytes());
}

TEST(GgufWriter, ReplaceRemoveHas) {
    Writer w;
    w.set_u32("a", 1);
    w.set_string("b", "x");
    w.set_u32("c", 3);
    w.set_string("a", "now a string");  // replaced in place, type may change
    EXPECT_TRUE(w.has("b"));
    w.remove("b");
    EXPECT_FALSE(w.has("b"));
    w.remove("never-set");  // no-op
    auto f = reread(w.to_bytes());
    ASSERT_EQ(f->metadata().size(), 2u);
    EXPECT_EQ(f->metadata()[0].key, "a");
    EXPECT_EQ(*f->get_string("a"), "now a string");
    EXPECT_EQ(f->metadata()[1].key, "c");
    EXPECT_THROW(w.set_u32("", 1), Error);
}

TEST(GgufWriter, TensorsAndAlignment) {
    std::vector<float> a(64 * 3), b(32);
    for (size_t i = 0; i < a.size(); ++i) a[i] = (float)i;
    for (size_t i = 0; i < b.size(); ++i) b[i] = -(float)i;
    std::vector<uint8_t> q(34 * 2 * 5, 0xAB);  // Q8_0: 64 x 5 = 2 blocks of 34 bytes per row

    for (uint64_t align : {32u, 64u, 1u, 4096u}) {
        SCOPED_TRACE(align);
        Writer w;
        w.set_string("general.architecture", "test");
        w.set_alignment(align);
        w.add_tensor("a", TensorType::F32, {64, 3}, a.data());
        w.add_tensor("q", TensorType::Q8_0, {64, 5}, q.data());
        w.add_tensor("b", TensorType::F32, {32}, b.data());
        auto bytes = w.to_bytes();
        auto f = reread(bytes);
        EXPECT_EQ(f->alignment(), align);
        EXPECT_EQ(f->find("general.alignment") != nullptr, align != 32);
        if (align != 32) {
            EXPECT_EQ(*f->get_uint("general.alignment"), align);
        }
        EXPECT_EQ(f->data_offset() % align, 0u);
        ASSERT_EQ(f->tensors().size(), 3u);
        EXPECT_EQ(f->tensors()[0].name, "a");
        EXPECT_EQ(f->tensors()[1].name, "q");
        for (const TensorInfo& t : f->tensors()) EXPECT_EQ(t.offset % align, 0u);
        const TensorInfo* tq = f->find_tensor("q");
        EXPECT_EQ(tq->n_bytes, q.size());
        EXPECT_EQ(std::memcmp(tq->data, q.data(), q.size()), 0);
        EXPECT_EQ(std::memcmp(f->find_tensor("a")->data, a.data(), a.size() * 4), 0);
        EXPECT_EQ(std::memcmp(f->find_tensor("b")->data, b.data(), b.size() * 4), 0);
        EXPECT_EQ(bytes.size() % align, 0u);
    }
    // set_alignment back to the default after a non-default keeps the key, with 32.
    Writer w;
    w.set_alignment(64);
    w.set_alignment(32);
    auto f = reread(w.to_bytes());
    EXPECT_EQ(f->alignment(), 32u);
    // The alignment key set directly (as copy_value does) governs the layout.
    Writer w2;
    w2.set_u64("general.alignment", 128);
    w2.add_tensor("b", TensorType::F32, {32}, b.data());
    auto f2 = reread(w2.to_bytes());
    EXPECT_EQ(f2->alignment(), 128u);
    EXPECT_EQ(f2->data_offset() % 128, 0u);
}

TEST(GgufWriter, RejectsBadInput) {
    float x[64] = {};
    Writer w;
    EXPECT_THROW(w.set_alignment(0), Error);
    EXPECT_THROW(w.set_alignment(3), Error);
    EXPECT_THROW(w.set_alignment(1ull << 30), Error);
    EXPECT_THROW(w.set_string("general.alignment", "32"), Error);
    EXPECT_THROW(w.set_i32("general.alignment", 32), Error);
    EXPECT_THROW(w.set_u32("general.alignment", 48), Error);
    EXPECT_THROW(w.add_tensor("", TensorType::F32, {1}, x), Error);
    EXPECT_THROW(w.add_tensor("t", TensorType::F32, {}, x), Error);
    EXPECT_THROW(w.add_tensor("t", TensorType::F32, {1, 1, 1, 1, 1}, x), Error);
    EXPECT_THROW(w.add_tensor("t", TensorType::F32, {0}, x), Error);
    EXPECT_THROW(w.add_tensor("t", TensorType::F32, {-1}, x), Error);
    EXPECT_THROW(w.add_tensor("t", TensorType::Q8_0, {33}, x), Error);
    EXPECT_THROW(w.add_tensor("t", (TensorType)4, {1}, x), Error);
    EXPECT_THROW(w.add_tensor("t", (TensorType)99, {1}, x), Error);
    EXPECT_THROW(w.add_tensor("t", TensorType::F32, {1}, nullptr), Error);
    w.add_tensor("t", TensorType::F32, {64}, x);
    EXPECT_THROW(w.add_tensor("t", TensorType::F32, {64}, x), Error);
    EXPECT_EQ(reread(w.to_bytes())->tensors().size(), 1u);
}

}  // namespace
}  // namespace lokal::gguf
