#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "tokenizer/unicode.h"

namespace lokal {

namespace {

// Private-use stand-ins for code point classes in collapsed subjects.
constexpr uint32_t kCollapsedOther = 0xE0D0;
constexpr uint32_t kCollapsedNumber = 0xE0D1;
constexpr uint32_t kCollapsedLetter = 0xE0D2;
constexpr uint32_t kCollapsedPunct = 0xE0D3;
constexpr uint32_t kCollapsedMark = 0xE0D4;
constexpr uint32_t kCollapsedSymbol = 0xE0D5;
constexpr uint32_t kWhitespaceStandIn = 0x0B;

// The members of each category, as class items: the stand-in plus the ASCII members the
// reference uses (note: its \p{S} leaves out '~').
const char* category_items(char cat) {
    switch (cat) {
        case 'N':
            return "\\x{E0D1}0-9";
        case 'L':
            return "\\x{E0D2}A-Za-z";
        case 'P':
            return "\\x{E0D3}\\x21-\\x23\\x25-\\x2A\\x2C-\\x2F\\x3A-\\x3B\\x3F-\\x40\\x5B-\\x5D"
                   "\\x5F\\x7B\\x7D";
        case 'M':
            return "\\x{E0D4}";
        case 'S':
            return "\\x{E0D5}\\x24\\x2B\\x3C-\\x3E\\x5E\\x60\\x7C";
        default:
            return nullptr;
    }
}

bool uses_categories(const std::string& re) {
    for (size_t i = 0; i + 4 < re.size(); ++i) {
        if (re[i] == '\\' && re[i + 1] == 'p' && re[i + 2] == '{' && re[i + 4] == '}' &&
            category_items(re[i + 3]))
            return true;
    }
    return false;
}

// Rewrites \p{X} into the collapsed form; brackets are tracked the way the reference does.
std::string collapse_pattern(const std::string& re) {
    std::string out;
    bool inside = false;
    for (size_t i = 0; i < re.size(); ++i) {
        const char c = re[i];
        if (c == '[' && (i == 0 || re[i - 1] != '\\')) {
            out += '[';
            inside = true;
            continue;
        }
        if (inside && c == ']' && re[i - 1] != '\\') {
            out += ']';
            inside = false;
            continue;
        }
        if (c == '\\' && i + 4 < re.size() && re[i + 1] == 'p' && re[i + 2] == '{' &&
            re[i + 4] == '}') {
            if (const char* items = category_items(re[i + 3])) {
                if (!inside) out += '[';
                out += items;
                if (!inside) out += ']';
                i += 4;
                continue;
            }
        }
        out += c;
    }
    return out;
}

uint32_t collapsed_cp(uint32_t cp) {
    if (cp < 0x80) return cp;
    switch (unicode::cp_class(cp)) {
        case unicode::kWhitespace:
            return kWhitespaceStandIn;
        case unicode::kLetter:
            return kCollapsedLetter;
        case unicode::kNumber:
            return kCollapsedNumber;
        case unicode::kPunctuation:
            return kCollapsedPunct;
        case unicode::kMark:
            return kCollapsedMark;
        case unicode::kSymbol:
            return kCollapsedSymbol;
        default:
            return kCollapsedOther;
    }
}

uint32_t wide_cp(uint32_t cp) {
    if (cp < 0x80) return cp;
    if (unicode::cp_class(cp) == unicode::kWhitespace) return kWhitespaceStandIn;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return unicode::kReplacement;
    return cp;
}

// The subject a pattern runs on, in UTF-8, with the byte offset of every code point.
struct Subject {
    std::string text;
    std::vector<size_t> offset;  // size n + 1

    Subject(const std::vector<uint32_t>& cpts, bool collapsed) {
        text.reserve(cpts.size());
        offset.reserve(cpts.size() + 1);
        for (uint32_t cp : cpts) {
            offset.push_back(text.size());
            unicode::append_utf8(text, collapsed ? collapsed_cp(cp) : wide_cp(cp));
        }
        offset.push_back(text.size());
    }
};

struct MatchDataDeleter {
    void operator()(pcre2_match_data* md) const { pcre2_match_data_free(md); }
};

}  // namespace

struct RegexSplitter::Pattern {
    pcre2_code* code = nullptr;
    bool collapsed = false;
    ~Pattern() {
        if (code) pcre2_code_free(code);
    }
};

RegexSplitter::RegexSplitter(const std::vector<std::string>& patterns) {
    for (const auto& re : patterns) {
        auto p = std::make_unique<Pattern>();
        p->collapsed = uses_categories(re);
        const std::string src = p->collapsed ? collapse_pattern(re) : re;
        int err = 0;
        PCRE2_SIZE err_off = 0;
        p->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(src.data()), src.size(),
                                PCRE2_UTF | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
        if (!p->code) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof(msg));
            throw std::runtime_error("pre-tokenizer regex does not compile at offset " +
                                     std::to_string(err_off) + ": " +
                                     reinterpret_cast<const char*>(msg));
        }
        pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
        patterns_.push_back(std::move(p));
    }
}

RegexSplitter::~RegexSplitter() = default;

std::vector<size_t> RegexSplitter::split(const std::vector<uint32_t>& cpts) const {
    std::vector<size_t> pieces;
    if (cpts.empty()) return pieces;
    pieces.push_back(cpts.size());

    std::unique_ptr<Subject> collapsed, wide;
    for (const auto& p : patterns_) {
        auto& subj = p->collapsed ? collapsed : wide;
        if (!subj) subj = std::make_unique<Subject>(cpts, p->collapsed);
        const std::string& text = subj->text;
        const std::vector<size_t>& off = subj->offset;

        std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
            pcre2_match_data_create_from_pattern(p->code, nullptr));
        if (!md) throw std::bad_alloc();

        // Code point index of a byte offset inside the subject.
        const auto cp_index = [&](size_t byte) {
            return static_cast<size_t>(std::lower_bound(off.begin(), off.end(), byte) -
                                       off.begin());
        };

        std::vector<size_t> next;
        next.reserve(pieces.size() * 2);
        size_t start = 0;  // code point index of the current fragment
        for (const size_t len : pieces) {
            const size_t b0 = off[start];
            const size_t n_bytes = off[start + len] - b0;
            const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + b0);
            size_t pos = 0;   // byte position in the fragment to search from
            size_t done = 0;  // code points of the fragment already emitted
            while (pos <= n_bytes) {
                int rc = pcre2_match(p->code, subject, n_bytes, pos, PCRE2_NO_UTF_CHECK, md.get(),
                                     nullptr);
                if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                    rc = pcre2_match(p->code, subject, n_bytes, pos,
                                     PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md.get(), nullptr);
                if (rc < 0) {
                    if (rc != PCRE2_ERROR_NOMATCH)
                        std::fprintf(stderr,
                                     "lokal: pre-tokenizer regex error %d, rest of the "
                                     "fragment left unsplit\n",
                                     rc);
                    break;
                }
                const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
                const size_t m0 = ov[0], m1 = ov[1];
                if (m1 <= m0) {  // empty match: step one code point and search on
                    if (m0 >= n_bytes) break;
                    pos = off[cp_index(b0 + m0) + 1] - b0;
                    continue;
                }
                const size_t c0 = cp_index(b0 + m0) - start;
                const size_t c1 = cp_index(b0 + m1) - start;
                if (c0 > done) next.push_back(c0 - done);
                next.push_back(c1 - c0);
                done = c1;
                pos = m1;
            }
            if (done < len) next.push_back(len - done);
            start += len;
        }
        pieces = std::move(next);
    }
    return pieces;
}

// ---------------------------------------------------------------------------------------
// Pre-tokenizer table (regexes as in the reference, which took them from each model's
// tokenizer.json, rewritten where the original used constructs it does not support).

namespace {

const char* const kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kCjk = "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+";
const char* const kPoro =
    " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+";
const char* const kTekken =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?"
    "((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kGpt4o =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|"
    "'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])"
    "([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}"
    "\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char* const kDeepseekLetters =
    "\\s?["
    "\\x{41}-\\x{5A}\\x{61}-\\x{7A}\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"
    "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}"
    "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}"
    "\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"
    "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
    "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"
    "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}"
    "\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}"
    "\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}"
    "\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"
    "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}"
    "\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"
    "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}"
    "\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"
    "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}"
    "\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}"
    "\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}"
    "\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
    "]+";
const char* const kDeepseekPunct =
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+";

enum class Pre {
    kDefault,
    kGpt2,
    kLlama3,
    kQwen2,
    kDeepseekLlm,
    kDeepseekCoder,
    kDeepseek3,
    kFalcon,
    kStarcoder,
    kPoro,
    kViking,
    kTekken,
    kChameleon,
    kGpt4o,
};

std::vector<std::string> regexes_for(Pre pre) {
    switch (pre) {
        case Pre::kGpt2:
            return {kGpt2};
        case Pre::kLlama3:
            return {kLlama3};
        case Pre::kQwen2:
            return {kQwen2};
        case Pre::kDeepseekLlm:
            return {"[\r\n]", kDeepseekLetters, kDeepseekPunct, "\\s+$", kCjk, "\\p{N}+"};
        case Pre::kDeepseekCoder:
            return {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"};
        case Pre::kDeepseek3:
            return {
                "\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
                "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
                "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
        case Pre::kFalcon:
            return {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2, "[0-9][0-9][0-9]"};
        case Pre::kStarcoder:
            return {"\\p{N}", kGpt2};
        case Pre::kPoro:
            return {kPoro};
        case Pre::kViking:
            return {kPoro, "\\p{N}"};
        case Pre::kTekken:
            return {kTekken};
        case Pre::kChameleon:
            return {"<sentinel:[0-9]+>",      "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
                    "([\\t\\n]|    |  )",     "\\p{N}",
                    "[\\p{P}!-/:-@\\[-`{-~]", kGpt2};
        case Pre::kGpt4o:
            return {kGpt4o};
        case Pre::kDefault:
        default:
            return {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2, "\\p{N}+", "[0-9][0-9][0-9]"};
    }
}

struct NameEntry {
    const char* name;
    Pre pre;
};

const NameEntry kNames[] = {
    {"default", Pre::kDefault},
    {"llama3", Pre::kLlama3},
    {"llama-v3", Pre::kLlama3},
    {"llama-bpe", Pre::kLlama3},
    {"falcon3", Pre::kLlama3},
    {"dbrx", Pre::kLlama3},
    {"smaug-bpe", Pre::kLlama3},
    {"chatglm-bpe", Pre::kLlama3},
    {"deepseek-llm", Pre::kDeepseekLlm},
    {"deepseek-coder", Pre::kDeepseekCoder},
    {"deepseek-v3", Pre::kDeepseek3},
    {"falcon", Pre::kFalcon},
    {"gpt-2", Pre::kGpt2},
    {"gpt2", Pre::kGpt2},
    {"mpt", Pre::kGpt2},
    {"olmo", Pre::kGpt2},
    {"jais", Pre::kGpt2},
    {"phi-2", Pre::kGpt2},
    {"jina-es", Pre::kGpt2},
    {"jina-de", Pre::kGpt2},
    {"gigachat", Pre::kGpt2},
    {"jina-v1-en", Pre::kGpt2},
    {"jina-v2-es", Pre::kGpt2},
    {"jina-v2-de", Pre::kGpt2},
    {"jina-v2-code", Pre::kGpt2},
    {"roberta-bpe", Pre::kGpt2},
    {"trillion", Pre::kGpt2},
    {"starcoder", Pre::kStarcoder},
    {"refact", Pre::kStarcoder},
    {"command-r", Pre::kStarcoder},
    {"smollm", Pre::kStarcoder},
    {"codeshell", Pre::kStarcoder},
    {"exaone", Pre::kStarcoder},
    {"minerva-7b", Pre::kStarcoder},
    {"qwen2", Pre::kQwen2},
    {"stablelm2", Pre::kQwen2},
    {"megrez", Pre::kQwen2},
    {"hunyuan", Pre::kQwen2},
    {"poro-chat", Pre::kPoro},
    {"bloom", Pre::kPoro},
    {"gpt3-finnish", Pre::kPoro},
    {"viking", Pre::kViking},
    {"tekken", Pre::kTekken},
    {"chameleon", Pre::kChameleon},
    {"gpt-4o", Pre::kGpt4o},
};

}  // namespace

PreTokenizerSpec pre_tokenizer_spec(std::string_view name) {
    PreTokenizerSpec spec;
    if (name.empty()) {
        spec.regexes = regexes_for(Pre::kDefault);
        spec.known = false;
        return spec;
    }
    for (const auto& e : kNames) {
        if (name != e.name) continue;
        spec.regexes = regexes_for(e.pre);
        if (name == "llama3" || name == "llama-v3" || name == "llama-bpe" || name == "falcon3" ||
            name == "tekken") {
            spec.ignore_merges = true;
            spec.add_bos = 1;
        }
        if (name == "chameleon") spec.add_bos = 1;
        if (name == "chatglm-bpe") spec.no_bos = true;
        return spec;
    }
    // Unknown: most recent byte-level BPE models use the cl100k-style split of llama3.
    spec.regexes = regexes_for(Pre::kLlama3);
    spec.known = false;
    return spec;
}

}  // namespace lokal
