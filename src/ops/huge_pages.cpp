#include "ops/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace lokal {
namespace {

constexpr size_t kHuge = size_t(2) << 20;

size_t round_huge(size_t bytes) {
    return (bytes + kHuge - 1) / kHuge * kHuge;
}

}  // namespace

void* huge_alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    const size_t size = round_huge(bytes);
    // One huge page more than needed, trimmed so that the buffer starts on a boundary.
    void* raw =
        mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const uintptr_t r = (uintptr_t)raw, start = (r + kHuge - 1) / kHuge * kHuge;
    if (start > r) munmap(raw, start - r);
    if (r + kHuge > start) munmap((void*)(start + size), r + kHuge - start);
    madvise((void*)start, size, MADV_HUGEPAGE);
    return (void*)start;
}

void huge_free(void* p, size_t bytes) {
    if (p) munmap(p, round_huge(bytes));
}

}  // namespace lokal
