#include "template/unicode.h"

#include <algorithm>

namespace lokal::tmpl::uni {

uint32_t decode(std::string_view s, size_t& i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    int n = 0;
    uint32_t cp = 0;
    if ((b0 & 0xE0) == 0xC0) {
        n = 1;
        cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
        n = 2;
        cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
        n = 3;
        cp = b0 & 0x07;
    } else {
        ++i;
        return 0x110000 + b0;
    }
    for (int k = 1; k <= n; ++k) {
        if (i + k >= s.size()) {
            ++i;
            return 0x110000 + b0;
        }
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) {
            ++i;
            return 0x110000 + b0;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    static const uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF) {
        ++i;
        return 0x110000 + b0;
    }
    i += n + 1;
    return cp;
}

void append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x110000) {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(cp - 0x110000);  // escaped raw byte
    }
}

std::vector<uint32_t> to_cps(std::string_view s) {
    std::vector<uint32_t> v;
    v.reserve(s.size());
    for (size_t i = 0; i < s.size();) v.push_back(decode(s, i));
    return v;
}

std::string from_cps(const uint32_t* cps, size_t n) {
    std::string out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) append(out, cps[i]);
    return out;
}

size_t length(std::string_view s) {
    size_t n = 0;
    for (size_t i = 0; i < s.size();) {
        decode(s, i);
        ++n;
    }
    return n;
}

bool is_space(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static const uint32_t kZeros[] = {0x660, 0x6F0,  0x7C0,  0x966,  0x9E6,  0xA66,  0xAE6,
                                  0xB66, 0xBE6,  0xC66,  0xCE6,  0xD66,  0xE50,  0xED0,
                                  0xF20, 0x1040, 0x17E0, 0x1810, 0xFF10, 0x1D7CE};

int digit_value(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') ? static_cast<int>(c - '0') : -1;
    for (uint32_t z : kZeros)
        if (c >= z && c < z + 10) return static_cast<int>(c - z);
    return -1;
}

bool is_digit(uint32_t c) {
    return digit_value(c) >= 0;
}

// Pairs of (upper, lower) ranges with a constant offset.
struct CaseRange {
    uint32_t lo, hi;   // upper-case range
    int32_t delta;     // lower = upper + delta
    bool alternating;  // upper at even offsets, lower at the following odd code point
};

static const CaseRange kCase[] = {
    {0x41, 0x5A, 32, false},     {0xC0, 0xD6, 32, false},       {0xD8, 0xDE, 32, false},
    {0x100, 0x12F, 1, true},     {0x132, 0x137, 1, true},       {0x139, 0x148, 1, true},
    {0x14A, 0x177, 1, true},     {0x179, 0x17E, 1, true},       {0x182, 0x185, 1, true},
    {0x1A0, 0x1A5, 1, true},     {0x1CD, 0x1DC, 1, true},       {0x1DE, 0x1EF, 1, true},
    {0x1F8, 0x21F, 1, true},     {0x222, 0x233, 1, true},       {0x246, 0x24F, 1, true},
    {0x370, 0x373, 1, true},     {0x391, 0x3A1, 32, false},     {0x3A3, 0x3AB, 32, false},
    {0x3D8, 0x3EF, 1, true},     {0x400, 0x40F, 80, false},     {0x410, 0x42F, 32, false},
    {0x460, 0x481, 1, true},     {0x48A, 0x4BF, 1, true},       {0x4C1, 0x4CE, 1, true},
    {0x4D0, 0x52F, 1, true},     {0x531, 0x556, 48, false},     {0x10A0, 0x10C5, 7264, false},
    {0x1E00, 0x1E95, 1, true},   {0x1EA0, 0x1EFF, 1, true},     {0x1F08, 0x1F0F, -8, false},
    {0x1F18, 0x1F1D, -8, false}, {0x1F28, 0x1F2F, -8, false},   {0x1F38, 0x1F3F, -8, false},
    {0x1F48, 0x1F4D, -8, false}, {0x1F68, 0x1F6F, -8, false},   {0x2160, 0x216F, 16, false},
    {0x24B6, 0x24CF, 26, false}, {0x2C00, 0x2C2F, 48, false},   {0x2C80, 0x2CE3, 1, true},
    {0xA640, 0xA66D, 1, true},   {0xA680, 0xA69B, 1, true},     {0xA722, 0xA72F, 1, true},
    {0xA732, 0xA76F, 1, true},   {0xA779, 0xA77C, 1, true},     {0xA77E, 0xA787, 1, true},
    {0xFF21, 0xFF3A, 32, false}, {0x10400, 0x10427, 40, false},
};

static bool in_upper_range(const CaseRange& r, uint32_t c) {
    if (c < r.lo || c > r.hi) return false;
    return !r.alternating || ((c - r.lo) % 2 == 0);
}

// Latin digraphs with upper, title and lower forms (DŽ Dž dž, LJ Lj lj, NJ Nj nj, DZ Dz dz).
static bool digraph(uint32_t c, uint32_t& upper, uint32_t& lower) {
    if (c >= 0x1C4 && c <= 0x1CC) {
        upper = 0x1C4 + (c - 0x1C4) / 3 * 3;
        lower = upper + 2;
        return true;
    }
    if (c >= 0x1F1 && c <= 0x1F3) {
        upper = 0x1F1;
        lower = 0x1F3;
        return true;
    }
    return false;
}

uint32_t to_lower(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    uint32_t du, dl;
    if (digraph(c, du, dl)) return dl;
    if (c == 0x130) return 'i';  // approximation (Python yields i + combining dot)
    if (c == 0x178) return 0xFF;
    if (c == 0x1E9E) return 0xDF;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    for (const auto& r : kCase)
        if (in_upper_range(r, c)) return c + r.delta;
    return c;
}

uint32_t to_upper(uint32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
    uint32_t du, dl;
    if (digraph(c, du, dl)) return du;
    if (c == 0xFF) return 0x178;
    if (c == 0xB5) return 0x39C;
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if (c == 0x3C2) return 0x3A3;  // final sigma
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 37;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 63;
    for (const auto& r : kCase) {
        uint32_t u = c - r.delta;
        if (c >= r.lo + r.delta && in_upper_range(r, u)) return u;
    }
    return c;
}

uint32_t to_title(uint32_t c) {
    uint32_t du, dl;
    if (digraph(c, du, dl)) return du + 1;
    return to_upper(c);
}

bool is_upper(uint32_t c) {
    uint32_t du, dl;
    if (digraph(c, du, dl)) return c == du;
    return to_lower(c) != c || c == 0x1E9E;
}
bool is_lower(uint32_t c) {
    uint32_t du, dl;
    if (digraph(c, du, dl)) return c == dl;
    return to_upper(c) != c || c == 0xDF || c == 0x149 || (c >= 0xFB00 && c <= 0xFB06);
}

bool is_alpha(uint32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (is_cased(c) || c == 0xAA || c == 0xBA) return true;
    if (c < 0xC0) return false;
    if (c == 0xD7 || c == 0xF7) return false;
    if (c < 0x2B0) return true;  // Latin extended letters
    static const uint32_t kLetters[][2] = {
        {0x370, 0x373},   {0x376, 0x377},     {0x37B, 0x37D},     {0x386, 0x386},
        {0x388, 0x3FF},   {0x400, 0x481},     {0x48A, 0x52F},     {0x531, 0x556},
        {0x561, 0x587},   {0x5D0, 0x5EA},     {0x5EF, 0x5F2},     {0x620, 0x64A},
        {0x66E, 0x66F},   {0x671, 0x6D3},     {0x6D5, 0x6D5},     {0x6E5, 0x6E6},
        {0x6EE, 0x6EF},   {0x6FA, 0x6FC},     {0x6FF, 0x6FF},     {0x710, 0x72F},
        {0x904, 0x939},   {0x93D, 0x93D},     {0x950, 0x950},     {0x958, 0x961},
        {0x971, 0x980},   {0x985, 0x9B9},     {0xA05, 0xA39},     {0xA85, 0xAB9},
        {0xB05, 0xB39},   {0xB83, 0xBB9},     {0xC05, 0xC39},     {0xC85, 0xCB9},
        {0xD05, 0xD3A},   {0xE01, 0xE30},     {0xE32, 0xE33},     {0xE40, 0xE46},
        {0xE81, 0xEB0},   {0x10A0, 0x10FF},   {0x1100, 0x11FF},   {0x1E00, 0x1FFF},
        {0x3041, 0x3096}, {0x309D, 0x309F},   {0x30A1, 0x30FA},   {0x30FC, 0x30FF},
        {0x3105, 0x312F}, {0x3131, 0x318E},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},
        {0xA000, 0xA48C}, {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFB1D, 0xFB4F},
        {0xFB50, 0xFDFB}, {0xFE70, 0xFEFC},   {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},
        {0xFF66, 0xFFDC}, {0x10400, 0x1044F}, {0x20000, 0x3134F},
    };
    for (const auto& r : kLetters)
        if (c >= r[0] && c <= r[1]) return true;
    return false;
}

bool is_word(uint32_t c) {
    return c == '_' || is_alnum(c);
}

bool is_printable(uint32_t c) {
    if (c < 0x20 || c == 0x7F) return false;
    if (c < 0x7F) return true;
    if (c <= 0xA0 || c == 0xAD) return false;
    if (c >= 0x110000) return false;
    if (c >= 0xD800 && c <= 0xDFFF) return false;  // surrogates
    if (c >= 0xE000 && c <= 0xF8FF) return false;  // private use
    if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F)) return false;
    if ((c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF) return false;
    if (c >= 0xFFF0 && c <= 0xFFFB) return false;
    if (c == 0xFFFE || c == 0xFFFF) return false;
    if (c >= 0xF0000) return false;  // supplementary private use
    if (c == 0x600 || c == 0x6DD || c == 0x70F || c == 0x180E) return false;
    return true;
}

std::string upper(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        uint32_t c = decode(s, i);
        static const char* const kLigatures[] = {"FF", "FI", "FL", "FFI", "FFL", "ST", "ST"};
        if (c == 0xDF) {
            out += "SS";
        } else if (c >= 0xFB00 && c <= 0xFB06) {
            out += kLigatures[c - 0xFB00];
        } else {
            append(out, to_upper(c));
        }
    }
    return out;
}

std::string lower(std::string_view s) {
    const auto cps = to_cps(s);
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < cps.size(); ++i) {
        const uint32_t c = cps[i];
        if (c == 0x130) {  // İ -> i + combining dot above
            out += "i\xCC\x87";
        } else if (c == 0x3A3) {  // final sigma: after a cased letter, not before one
            const bool after = i > 0 && is_cased(cps[i - 1]);
            const bool before = i + 1 < cps.size() && is_cased(cps[i + 1]);
            append(out, after && !before ? 0x3C2 : 0x3C3);
        } else {
            append(out, to_lower(c));
        }
    }
    return out;
}

std::string swapcase(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        uint32_t c = decode(s, i);
        if (is_upper(c))
            append(out, to_lower(c));
        else if (c == 0xDF)
            out += "SS";
        else
            append(out, to_upper(c));
    }
    return out;
}

std::string capitalize(std::string_view s) {
    std::string out;
    bool first = true;
    for (size_t i = 0; i < s.size();) {
        uint32_t c = decode(s, i);
        if (first) {
            if (c == 0xDF)
                out += "Ss";
            else
                append(out, to_title(c));
            first = false;
        } else {
            append(out, to_lower(c));
        }
    }
    return out;
}

std::string title(std::string_view s) {
    std::string out;
    bool prev_cased = false;
    for (size_t i = 0; i < s.size();) {
        uint32_t c = decode(s, i);
        if (is_cased(c) || c == 0xDF) {
            if (prev_cased)
                append(out, to_lower(c));
            else if (c == 0xDF)
                out += "Ss";
            else
                append(out, to_title(c));
            prev_cased = true;
        } else {
            append(out, c);
            prev_cased = false;
        }
    }
    return out;
}

std::string strip(std::string_view s, const std::string* chars, bool left, bool right) {
    auto cps = to_cps(s);
    std::vector<uint32_t> set;
    if (chars) set = to_cps(*chars);
    auto strip_me = [&](uint32_t c) {
        if (!chars) return is_space(c);
        return std::find(set.begin(), set.end(), c) != set.end();
    };
    size_t b = 0, e = cps.size();
    if (left)
        while (b < e && strip_me(cps[b])) ++b;
    if (right)
        while (e > b && strip_me(cps[e - 1])) --e;
    return from_cps(cps.data() + b, e - b);
}

}  // namespace lokal::tmpl::uni
