// Huge-page buffers (ops/huge_pages.h): the weight arena and the KV cache live in them.
#include "ops/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

namespace lokal {
namespace {

constexpr size_t kHuge = size_t(2) << 20;

TEST(HugePages, AllocIsAlignedZeroedAndWritable) {
    EXPECT_EQ(huge_alloc(0), nullptr);
    for (size_t bytes : {size_t(1), kHuge - 1, kHuge, 3 * kHuge + 12345}) {
        auto* p = static_cast<uint8_t*>(huge_alloc(bytes));
        ASSERT_NE(p, nullptr) << bytes;
        EXPECT_EQ((uintptr_t)p % kHuge, 0u) << bytes;
        // Zero-filled (fresh anonymous memory) and writable to the last byte.
        EXPECT_EQ(p[0], 0);
        EXPECT_EQ(p[bytes - 1], 0);
        p[0] = 1;
        p[bytes - 1] = 2;
        EXPECT_EQ(p[bytes - 1], 2);
        if (bytes > 1) {
            EXPECT_EQ(p[0], 1);
        }
        huge_free(p, bytes);
    }
    huge_free(nullptr, 10);  // like free(nullptr)
}

TEST(HugePages, AllocatorKeepsValuesAcrossGrowthAndSizes) {
    using Vec = std::vector<uint16_t, HugePageAllocator<uint16_t>>;
    // Below 1 MiB the ordinary heap, from 1 MiB huge_alloc (2 MiB aligned).
    Vec small(1000, 7), large(HugePageAllocator<uint16_t>::kMinBytes / sizeof(uint16_t) + 1);
    EXPECT_EQ(small[999], 7);
    EXPECT_EQ((uintptr_t)large.data() % kHuge, 0u);
    EXPECT_EQ(large.back(), 0);
    Vec v;
    for (uint32_t i = 0; i < 800000; ++i) v.push_back((uint16_t)i);  // grows across the 1 MiB
    ASSERT_EQ(v.size(), 800000u);
    for (uint32_t i = 0; i < v.size(); i += 4099) ASSERT_EQ(v[i], (uint16_t)i);
    Vec copy = v;
    EXPECT_TRUE(std::equal(copy.begin(), copy.end(), v.begin()));
    large = small;  // a large buffer replaced by a small one and back
    EXPECT_EQ(large.size(), 1000u);
    large.assign(700000, 3);
    EXPECT_EQ(std::accumulate(large.begin(), large.end(), uint64_t(0)), 2100000u);
}

TEST(HugePages, ZeroBufferReadsZeroUntilWrittenAndMoves) {
    for (size_t n : {size_t(0), size_t(3), size_t(1) << 19, (size_t(3) << 20) + 7}) {
        ZeroBuffer<uint16_t> b(n);
        ASSERT_EQ(b.size(), n);
        if (n == 0) continue;
        ASSERT_NE(b.data(), nullptr);
        if (n * sizeof(uint16_t) >= (size_t(1) << 20)) {
            EXPECT_EQ((uintptr_t)b.data() % kHuge, 0u) << n;
        }
        for (size_t i = 0; i < n; i += 997) ASSERT_EQ(b[i], 0) << i;
        EXPECT_EQ(b[n - 1], 0);
        b[n - 1] = 0x3c00;
        ZeroBuffer<uint16_t> moved(std::move(b));
        EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
        EXPECT_EQ(b.size(), 0u);
        EXPECT_EQ(moved[n - 1], 0x3c00);
        ZeroBuffer<uint16_t> other(5);
        other = std::move(moved);
        EXPECT_EQ(other.size(), n);
        EXPECT_EQ(other[n - 1], 0x3c00);
    }
}

}  // namespace
}  // namespace lokal
