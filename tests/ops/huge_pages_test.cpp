// Huge-page buffers (ops/huge_pages.h): the repacked weights and the KV cache live in them.
#include "ops/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>

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

TEST(HugePages, ZeroBufferReadsZeroUntilWrittenAndMoves) {
    for (size_t n : {size_t(0), size_t(3), size_t(1) << 19, (size_t(3) << 20) + 7}) {
        ZeroBuffer<uint16_t> b(n);
        ASSERT_EQ(b.size(), n);
        if (n == 0) continue;
        ASSERT_NE(b.data(), nullptr);
        // Kernels read it with aligned vector loads; large buffers start on a huge page.
        EXPECT_EQ((uintptr_t)b.data() % 64, 0u) << n;
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
