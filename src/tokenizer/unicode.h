// UTF-8 helpers and the code point classes used by the tokenizers.
//
// Decoding is deliberately lenient in the way llama.cpp's is (the reference the test
// vectors come from): a well-formed lead byte followed by the right number of
// continuation bytes decodes to its value (overlong forms and surrogates included);
// anything else yields U+FFFD and consumes one byte. Values above U+10FFFF also yield
// U+FFFD (one byte consumed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lokal::unicode {

inline constexpr uint32_t kReplacement = 0xFFFD;

// Classes for pre-tokenization. Whitespace (Unicode White_Space) takes precedence over
// the general category; kOther covers control, format, private use, unassigned, and
// separators that are not white space.
enum CpClass : uint8_t {
    kOther = 0,
    kWhitespace = 1,
    kLetter = 2,
    kNumber = 3,
    kPunctuation = 4,
    kMark = 5,
    kSymbol = 6,
};

CpClass cp_class(uint32_t cp);

// Length of the UTF-8 sequence announced by a lead byte, as llama.cpp counts it (by the
// high nibble: 0x0-0xB -> 1, 0xC-0xD -> 2, 0xE -> 3, 0xF -> 4). No validation.
inline size_t utf8_len(uint8_t lead) {
    static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return kLen[lead >> 4];
}

// Decodes one code point at `pos` (lenient, see above) and advances `pos`.
uint32_t decode_one(std::string_view s, size_t& pos);
std::vector<uint32_t> decode(std::string_view s);

// Appends the UTF-8 encoding of `cp` (surrogates are encoded like any other value;
// values above U+10FFFF append U+FFFD).
void append_utf8(std::string& out, uint32_t cp);

// GPT-2 byte-level BPE: byte -> printable code point, and the inverse (-1 when the code
// point is not the image of a byte).
uint32_t byte_to_cp(uint8_t b);
int cp_to_byte(uint32_t cp);

// Strict UTF-8 validity of a complete sequence starting at s[0]: returns its length, 0
// when s[0..] is a valid but incomplete prefix (more bytes could complete it), or -1
// when invalid (the caller consumes `invalid_len` bytes as one maximal invalid subpart).
int utf8_check(std::string_view s, size_t& invalid_len);

}  // namespace lokal::unicode
