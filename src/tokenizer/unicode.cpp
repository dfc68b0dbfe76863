#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace lokal::unicode {

namespace detail {
extern const uint32_t kClassRuns[];
extern const size_t kClassRunsCount;
}  // namespace detail

CpClass cp_class(uint32_t cp) {
    if (cp >= 0x110000) return kOther;
    // Last run starting at or before cp.
    const uint32_t* begin = detail::kClassRuns;
    const uint32_t* end = begin + detail::kClassRunsCount;
    const uint32_t key = (cp << 8) | 0xFF;
    const uint32_t* it = std::upper_bound(begin, end, key);
    if (it == begin) return kOther;
    return static_cast<CpClass>(*(it - 1) & 0xFF);
}

uint32_t decode_one(std::string_view s, size_t& pos) {
    const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
    const uint8_t c = b(pos);
    const auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xC0) == 0x80; };
    if (c < 0x80) {
        pos += 1;
        return c;
    }
    if ((c & 0xE0) == 0xC0 && cont(pos + 1)) {
        const uint32_t cp = ((c & 0x1Fu) << 6) | (b(pos + 1) & 0x3Fu);
        pos += 2;
        return cp;
    }
    if ((c & 0xF0) == 0xE0 && cont(pos + 1) && cont(pos + 2)) {
        const uint32_t cp =
            ((c & 0x0Fu) << 12) | ((b(pos + 1) & 0x3Fu) << 6) | (b(pos + 2) & 0x3Fu);
        pos += 3;
        return cp;
    }
    if ((c & 0xF8) == 0xF0 && cont(pos + 1) && cont(pos + 2) && cont(pos + 3)) {
        const uint32_t cp = ((c & 0x07u) << 18) | ((b(pos + 1) & 0x3Fu) << 12) |
                            ((b(pos + 2) & 0x3Fu) << 6) | (b(pos + 3) & 0x3Fu);
        if (cp <= 0x10FFFF) {
            pos += 4;
            return cp;
        }
    }
    pos += 1;
    return kReplacement;
}

std::vector<uint32_t> decode(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    size_t pos = 0;
    while (pos < s.size()) out.push_back(decode_one(s, pos));
    return out;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp <= 0x10FFFF) {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        append_utf8(out, kReplacement);
    }
}

namespace {

struct ByteMap {
    std::array<uint32_t, 256> to_cp{};
    ByteMap() {
        // Printable bytes map to themselves; the others, in order, to 256, 257, ...
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable =
                (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

}  // namespace

uint32_t byte_to_cp(uint8_t b) {
    return byte_map().to_cp[b];
}

int cp_to_byte(uint32_t cp) {
    // Images are 0x21..0xFF (identity, minus the gaps) and 256..323.
    if (cp < 256) {
        const bool printable =
            (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF);
        return printable ? static_cast<int>(cp) : -1;
    }
    if (cp < 256 + 68) {
        const auto& m = byte_map().to_cp;
        for (int b = 0; b < 256; ++b)
            if (m[b] == cp) return b;
    }
    return -1;
}

int utf8_check(std::string_view s, size_t& invalid_len) {
    invalid_len = 1;
    const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
    const uint8_t c = b(0);
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (size_t i = 1; i < need; ++i) {
        if (i >= s.size()) return 0;  // valid so far, incomplete
        const uint8_t x = b(i);
        const bool ok = i == 1 ? (x >= lo && x <= hi) : (x & 0xC0) == 0x80;
        if (!ok) {
            invalid_len = i;
            return -1;
        }
    }
    return static_cast<int>(need);
}

}  // namespace lokal::unicode
