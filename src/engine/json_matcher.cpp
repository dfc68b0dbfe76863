#include "engine/json_matcher.h"

#include <algorithm>
#include <deque>
#include <tuple>

#include "tokenizer/token_trie.h"

namespace lokal {
namespace {

using Kind = JsonSchema::Kind;

// Phases. Every value frame starts at kStart, where it may take whitespace.
constexpr uint8_t kStart = 0;
// Object
constexpr uint8_t kObjOpenFirst = 1;  // after '{': a key or '}'
constexpr uint8_t kObjOpenNext = 2;   // after ',': a key
constexpr uint8_t kObjKey = 3;        // inside a listed key
constexpr uint8_t kObjColon = 4;      // after a key
constexpr uint8_t kObjAfter = 5;      // after a value: ',' or '}'
// Array
constexpr uint8_t kArrFirst = 1;  // after '[': an item or ']'
constexpr uint8_t kArrAfter = 2;  // after an item: ',' or ']'
// String
constexpr uint8_t kStrBody = 1;
constexpr uint8_t kStrEscape = 2;
constexpr uint8_t kStrHex = 3;   // pos: hex digits read
constexpr uint8_t kStrUtf8 = 4;  // pos: continuation bytes still due; b: the lead byte
// After a high surrogate escape (\uD800-\uDBFF) only its low half may follow: \, u, hex.
constexpr uint8_t kStrLowSlash = 5, kStrLowU = 6, kStrLowHex = 7;
// Number (the grammar of RFC 8259)
constexpr uint8_t kNumMinus = 1, kNumZero = 2, kNumInt = 3, kNumDot = 4, kNumFrac = 5, kNumE = 6,
                  kNumExpSign = 7, kNumExp = 8;
// Literal
constexpr uint8_t kLitBody = 1;
// Sequence
constexpr uint8_t kSeqRunning = 1;

bool is_ws(uint8_t c) {
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}
// One whitespace run between JSON tokens: "", " ", or "\n" then up to kMaxIndent spaces
// or tabs (the rule llama.cpp's JSON grammars use), so a model cannot pad without end.
// ws: 0 nothing yet, kSpaceRun after a lone space, 1 + indent after a newline.
constexpr uint8_t kSpaceRun = 255;
bool take_ws(uint8_t& ws, uint8_t c) {
    if (ws == 0 && (c == ' ' || c == '\n')) {
        ws = c == ' ' ? kSpaceRun : 1;
        return true;
    }
    if (ws != kSpaceRun && ws >= 1 && ws <= JsonMatcher::kMaxIndent && (c == ' ' || c == '\t')) {
        ++ws;
        return true;
    }
    return false;
}
bool is_digit(uint8_t c) {
    return c >= '0' && c <= '9';
}
bool is_hex(uint8_t c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
// Whether a listed property at index >= from is required (the object cannot close yet).
bool required_from(const JsonSchema::Node& n, int32_t from) {
    for (size_t i = (size_t)std::max(from, 0); i < n.props.size(); ++i)
        if (n.props[i].required) return true;
    return false;
}
bool number_accepting(uint8_t phase) {
    return phase == kNumZero || phase == kNumInt || phase == kNumFrac || phase == kNumExp;
}
int utf8_continuations(uint8_t lead) {
    return lead < 0xE0 ? 1 : lead < 0xF0 ? 2 : 3;
}

}  // namespace

bool JsonMatcher::Frame::operator==(const Frame& o) const {
    return std::tie(node, phase, ws, a, b, pos, bytes, mask) ==
           std::tie(o.node, o.phase, o.ws, o.a, o.b, o.pos, o.bytes, o.mask);
}
bool JsonMatcher::Frame::operator<(const Frame& o) const {
    return std::tie(node, phase, ws, a, b, pos, bytes, mask) <
           std::tie(o.node, o.phase, o.ws, o.a, o.b, o.pos, o.bytes, o.mask);
}

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonSchema> schema) : schema_(std::move(schema)) {
    if (!schema_ || schema_->nodes.empty()) throw JsonSchemaError("empty JSON schema");
    States start;
    push_value({}, schema_->root, start);
    normalize(start);
    states_ = std::move(start);
}

void JsonMatcher::push_value(Stack s, int32_t node, States& out) const {
    if (node < 0) return;
    const JsonSchema::Node& n = schema_->nodes[(size_t)node];
    // Only values that can still be completed within the nesting limit (no dead ends).
    if ((int)s.size() + n.min_depth > kMaxDepth) return;
    if (n.kind == Kind::AnyOf) {
        // Compiling flattened AnyOf members: one level, never an AnyOf again.
        for (int32_t alt : n.alternatives) push_value(s, alt, out);
        return;
    }
    Frame f;
    f.node = node;
    s.push_back(f);
    out.push_back(std::move(s));
}

void JsonMatcher::finish_value(Stack s, States& out) const {
    s.pop_back();  // the parent already moved past this value
    out.push_back(std::move(s));
}

void JsonMatcher::step(Stack s, uint8_t c, States& out) const {
    if (s.empty()) return;  // the root value is complete: nothing may follow
    Frame& f = s.back();
    const Kind kind = schema_->nodes[(size_t)f.node].kind;
    // Whitespace between JSON tokens, wherever the frame on top is: before a value (not the
    // root: the text starts with the value itself), and inside an object or array except
    // within a key.
    const bool between = f.phase == kStart
                             ? s.size() > 1
                             : (kind == Kind::Object && f.phase != kObjKey) || kind == Kind::Array;
    if (is_ws(c) && (between || f.phase == kStart)) {
        // Raw text in a sequence may itself begin with whitespace ("\n</tool_call>").
        if (f.phase == kStart && kind == Kind::Literal) {
            Stack t = s;
            step_literal(t, c, out);
        }
        if (between && take_ws(s.back().ws, c)) out.push_back(std::move(s));
        return;
    }
    switch (kind) {
        case Kind::Object:
            return step_object(s, c, out);
        case Kind::Array:
            return step_array(s, c, out);
        case Kind::String:
            return step_string(s, c, out);
        case Kind::Number:
        case Kind::Integer:
            return step_number(s, c, out);
        case Kind::Literal:
            return step_literal(s, c, out);
        case Kind::Sequence:
            return step_sequence(s, c, out);
        case Kind::AnyOf:
            return;  // expanded by push_value, never on a stack
    }
}

// A sequence reads no bytes itself: it hands each byte to its next part (a: parts begun);
// after the last part it is complete and the byte goes to the enclosing value.
void JsonMatcher::step_sequence(Stack& s, uint8_t c, States& out) const {
    Frame& f = s.back();
    const std::vector<int32_t>& parts = schema_->nodes[(size_t)f.node].alternatives;
    if (f.a >= (int32_t)parts.size()) {
        s.pop_back();
        return step(std::move(s), c, out);
    }
    f.phase = kSeqRunning;  // past its start: whitespace belongs to the parts
    const int32_t part = parts[(size_t)f.a++];
    States next;
    push_value(std::move(s), part, next);
    for (Stack& t : next) step(std::move(t), c, out);
}

void JsonMatcher::step_object(Stack& s, uint8_t c, States& out) const {
    Frame& f = s.back();
    const JsonSchema::Node& n = schema_->nodes[(size_t)f.node];
    const int32_t n_props = (int32_t)n.props.size();
    switch (f.phase) {
        case kStart:
            if (c != '{') return;
            f.phase = kObjOpenFirst;
            f.ws = 0;
            f.a = 0;
            out.push_back(std::move(s));
            return;
        case kObjOpenFirst:
        case kObjOpenNext: {
            if (c == '}' && f.phase == kObjOpenFirst && !required_from(n, f.a))
                return finish_value(std::move(s), out);
            if (c != '"') return;
            // Listed keys that may come next: from the next one up to the first required.
            // Properties whose value cannot be completed within the nesting limit are left
            // out (a required one always fits: this object's min_depth counts it).
            const int depth = (int)s.size();
            auto fits = [&](int32_t node) {
                return depth + schema_->nodes[(size_t)node].min_depth <= kMaxDepth;
            };
            uint64_t window = 0;
            for (int j = 0; j < 64 && f.a + j < n_props; ++j) {
                const auto& prop = n.props[(size_t)(f.a + j)];
                if (fits(prop.node)) window |= uint64_t{1} << j;
                if (prop.required) break;
            }
            const int32_t key_node = n.key_node >= 0 ? n.key_node : schema_->plain_string;
            const bool additional = n.additional >= 0 && !required_from(n, f.a) &&
                                    depth < kMaxDepth && key_node >= 0 && fits(n.additional);
            if (additional) {
                Stack t = s;
                Frame& g = t.back();
                g.phase = kObjColon;
                g.ws = 0;
                g.a = n_props;  // listed properties are over
                g.b = n.additional;
                Frame key;
                key.node = key_node;
                key.phase = kStrBody;  // the opening quote is read
                if (schema_->nodes[(size_t)key_node].exclude_keys_of >= 0) {
                    key.mask =
                        n.props.size() >= 64 ? ~uint64_t{0} : (uint64_t{1} << n.props.size()) - 1;
                    key.bytes = 1;  // the quote, as in every listed key's JSON text
                }
                t.push_back(key);
                out.push_back(std::move(t));
            }
            if (window) {
                f.phase = kObjKey;
                f.ws = 0;
                f.pos = 1;
                f.mask = window;
                out.push_back(std::move(s));
            }
            return;
        }
        case kObjKey: {
            uint64_t live = 0;
            int matched = -1;
            for (int j = 0; j < 64; ++j) {
                if (!(f.mask >> j & 1)) continue;
                const std::string& key = n.props[(size_t)(f.a + j)].key;
                if ((size_t)f.pos < key.size() && (uint8_t)key[(size_t)f.pos] == c) {
                    live |= uint64_t{1} << j;
                    // Keys are distinct JSON strings and only their last byte is a raw
                    // quote, so at most one is complete.
                    if ((size_t)f.pos + 1 == key.size()) matched = j;
                }
            }
            if (!live) return;
            if (matched >= 0) {
                f.phase = kObjColon;
                f.ws = 0;
                f.b = n.props[(size_t)(f.a + matched)].node;
                f.a += matched + 1;
                f.pos = 0;
                f.mask = 0;
            } else {
                f.mask = live;
                ++f.pos;
            }
            out.push_back(std::move(s));
            return;
        }
        case kObjColon: {
            if (c != ':') return;
            f.phase = kObjAfter;
            f.ws = 0;
            const int32_t value = f.b;
            return push_value(std::move(s), value, out);
        }
        case kObjAfter:
            if (c == ',' && (f.a < n_props || n.additional >= 0)) {
                f.phase = kObjOpenNext;
                f.ws = 0;
                // Only when some key can follow (near the nesting limit none may fit).
                States probe;
                Stack t = s;
                step_object(t, '"', probe);
                if (!probe.empty()) out.push_back(std::move(s));
            } else if (c == '}' && !required_from(n, f.a)) {
                finish_value(std::move(s), out);
            }
            return;
    }
}

void JsonMatcher::step_array(Stack& s, uint8_t c, States& out) const {
    Frame& f = s.back();
    const JsonSchema::Node& n = schema_->nodes[(size_t)f.node];
    switch (f.phase) {
        case kStart:
            if (c != '[') return;
            f.phase = kArrFirst;
            f.ws = 0;
            f.a = 0;
            out.push_back(std::move(s));
            return;
        case kArrFirst: {
            if (c == ']') {
                if (n.min_items == 0) finish_value(std::move(s), out);
                return;
            }
            if (n.max_items == 0) return;
            f.phase = kArrAfter;
            f.ws = 0;
            f.a = 1;
            States items;
            push_value(std::move(s), n.items, items);
            for (Stack& t : items) step(std::move(t), c, out);
            return;
        }
        case kArrAfter:
            if (c == ',' && (n.max_items < 0 || f.a < n.max_items)) {
                ++f.a;
                f.ws = 0;
                push_value(std::move(s), n.items, out);
            } else if (c == ']' && f.a >= n.min_items) {
                finish_value(std::move(s), out);
            }
            return;
    }
}

void JsonMatcher::step_string(Stack& s, uint8_t c, States& out) const {
    Frame& f = s.back();
    const JsonSchema::Node& n = schema_->nodes[(size_t)f.node];
    const bool room = n.max_length < 0 || f.a < n.max_length;
    // An additional property's key may not repeat a listed one: mask holds the listed keys
    // (JSON texts, quotes included) that the key's bytes still equal, bytes how many.
    if (n.exclude_keys_of >= 0 && f.phase != kStart) {
        const auto& props = schema_->nodes[(size_t)n.exclude_keys_of].props;
        const bool closing = f.phase == kStrBody && c == '"';
        uint64_t live = 0;
        for (int j = 0; j < 64 && (size_t)j < props.size(); ++j) {
            const std::string& key = props[(size_t)j].key;
            if ((f.mask >> j & 1) && (size_t)f.bytes < key.size() &&
                (uint8_t)key[(size_t)f.bytes] == c)
                live |= uint64_t{1} << j;
        }
        // An escape could spell a listed key another way: not while the key still equals
        // the start of one.
        if (f.phase == kStrBody && c == '\\' && f.mask) return;
        if (closing) {
            for (int j = 0; j < 64; ++j)
                if ((live >> j & 1) && props[(size_t)j].key.size() == (size_t)f.bytes + 1) return;
        }
        f.mask = live;
        ++f.bytes;
    }
    switch (f.phase) {
        case kStart:
            if (c != '"') return;
            f.phase = kStrBody;
            f.a = 0;
            break;
        case kStrBody:
            if (c == '"') {
                if (f.a >= n.min_length) finish_value(std::move(s), out);
                return;
            }
            if (!room || c < 0x20) return;
            if (c == '\\') {
                f.phase = kStrEscape;
            } else if (c >= 0x80) {
                if (c < 0xC2 || c > 0xF4) return;  // not a UTF-8 lead byte
                f.phase = kStrUtf8;
                f.b = c;
                f.pos = utf8_continuations(c);
            }
            // The length only matters against a limit: past minLength with no maxLength it
            // stays put, so text inside a string leaves the state unchanged (the trie walk
            // then shares one state across whole subtrees, see walk()).
            if (n.max_length >= 0 || f.a < n.min_length) ++f.a;
            break;
        case kStrEscape:
            if (c == 'u') {
                f.phase = kStrHex;
                f.pos = 0;
                f.b = 0;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                       c == 'r' || c == 't') {
                f.phase = kStrBody;
            } else {
                return;
            }
            break;
        case kStrHex:
        case kStrLowHex: {
            if (!is_hex(c)) return;
            f.b = f.b * 16 + (is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
            ++f.pos;
            // Decided by the first two digits, so no escape is begun that cannot end: DC-DF
            // (a low surrogate) only right after a high one, and then nothing else.
            const bool want_low = f.phase == kStrLowHex;
            if (f.pos == 1 && want_low && f.b != 0xD) return;
            if (f.pos == 2 && (f.b >= 0xDC && f.b <= 0xDF) != want_low) return;
            if (f.pos < 4) break;
            const bool low = f.b >= 0xDC00 && f.b <= 0xDFFF;
            if (f.phase == kStrLowHex) {
                if (!low) return;  // a high surrogate needs its low half
                f.phase = kStrBody;
            } else if (low) {
                return;  // a low surrogate alone is no character
            } else {
                // The pair counts as one code point (counted at its first backslash).
                f.phase = f.b >= 0xD800 && f.b <= 0xDBFF ? kStrLowSlash : kStrBody;
            }
            break;
        }
        case kStrLowSlash:
            if (c != '\\') return;
            f.phase = kStrLowU;
            break;
        case kStrLowU:
            if (c != 'u') return;
            f.phase = kStrLowHex;
            f.pos = 0;
            f.b = 0;
            break;
        case kStrUtf8: {
            // The first continuation byte of some leads has a narrower range (no overlong
            // forms, no surrogates, nothing above U+10FFFF).
            uint8_t lo = 0x80, hi = 0xBF;
            if (f.pos == utf8_continuations((uint8_t)f.b)) {
                if (f.b == 0xE0) lo = 0xA0;
                if (f.b == 0xED) hi = 0x9F;
                if (f.b == 0xF0) lo = 0x90;
                if (f.b == 0xF4) hi = 0x8F;
            }
            if (c < lo || c > hi) return;
            if (--f.pos == 0) f.phase = kStrBody;
            break;
        }
        default:
            return;
    }
    out.push_back(std::move(s));
}

void JsonMatcher::step_number(Stack& s, uint8_t c, States& out) const {
    Frame& f = s.back();
    const bool real = schema_->nodes[(size_t)f.node].kind == Kind::Number;
    const bool exp = real && (c == 'e' || c == 'E');
    uint8_t next = 0;  // 0: c does not continue the number
    switch (f.phase) {
        case kStart:
            next = c == '-' ? kNumMinus : c == '0' ? kNumZero : is_digit(c) ? kNumInt : 0;
            break;
        case kNumMinus:
            next = c == '0' ? kNumZero : is_digit(c) ? kNumInt : 0;
            break;
        case kNumZero:
            next = real && c == '.' ? kNumDot : exp ? kNumE : 0;
            break;
        case kNumInt:
            next = is_digit(c) ? kNumInt : real && c == '.' ? kNumDot : exp ? kNumE : 0;
            break;
        case kNumDot:
            next = is_digit(c) ? kNumFrac : 0;
            break;
        case kNumFrac:
            next = is_digit(c) ? kNumFrac : exp ? kNumE : 0;
            break;
        case kNumE:
            next = c == '+' || c == '-' ? kNumExpSign : is_digit(c) ? kNumExp : 0;
            break;
        case kNumExpSign:
        case kNumExp:
            next = is_digit(c) ? kNumExp : 0;
            break;
    }
    // Integer parts of at most kMaxIntegerDigits digits (they fit an int64 and a double),
    // exponents of at most kMaxExponentDigits (no overflow to infinity), and a phase that
    // still needs a digit only with room left for it (no dead end at the length limit).
    if (next == kNumInt) f.pos = f.phase == kNumInt ? f.pos + 1 : 1;
    if (next == kNumExp) f.b = f.phase == kNumExp ? f.b + 1 : 1;
    const bool needs_more = next && !number_accepting(next);
    if (next && f.a + (needs_more ? 2 : 1) <= kMaxNumberBytes && f.pos <= kMaxIntegerDigits &&
        f.b <= kMaxExponentDigits) {
        f.phase = next;
        ++f.a;
        out.push_back(std::move(s));
        return;
    }
    // A byte that cannot continue the number ends it (if it is complete) and goes to the
    // enclosing value.
    if (!number_accepting(f.phase)) return;
    s.pop_back();
    step(std::move(s), c, out);
}

void JsonMatcher::step_literal(Stack& s, uint8_t c, States& out) const {
    Frame& f = s.back();
    const std::vector<std::string>& lits = schema_->nodes[(size_t)f.node].literals;
    if (f.phase == kStart) {
        f.phase = kLitBody;
        f.a = 0;
        f.b = (int32_t)lits.size();
        f.pos = 0;
    }
    // The live values [a, b) share their first pos bytes; sorted, so the complete one (if
    // any) comes first and those going on with c are contiguous.
    const size_t pos = (size_t)f.pos;
    const bool complete = pos > 0 && lits[(size_t)f.a].size() == pos;
    int32_t lo = f.a;
    while (lo < f.b && (lits[(size_t)lo].size() <= pos || (uint8_t)lits[(size_t)lo][pos] < c)) ++lo;
    int32_t hi = lo;
    while (hi < f.b && lits[(size_t)hi].size() > pos && (uint8_t)lits[(size_t)hi][pos] == c) ++hi;
    if (complete) {
        Stack done = s;
        done.pop_back();
        step(std::move(done), c, out);
    }
    if (hi > lo) {
        f.a = lo;
        f.b = hi;
        ++f.pos;
        out.push_back(std::move(s));
    }
}

void JsonMatcher::advance(const States& in, uint8_t c, States& out) const {
    out.clear();
    for (const Stack& s : in) step(s, c, out);
    normalize(out);
}

void JsonMatcher::normalize(States& states) {
    if (states.size() < 2) return;
    std::sort(states.begin(), states.end());
    states.erase(std::unique(states.begin(), states.end()), states.end());
    // Past kMaxStacks ways of reading the rest are dropped: some texts the schema allows
    // become unreachable (never one it refuses), and no schema can make a byte cost more
    // than that many stack steps.
    if ((int)states.size() > kMaxStacks) states.resize((size_t)kMaxStacks);
}

bool JsonMatcher::feed(std::string_view bytes) {
    States cur = states_, next;
    for (char ch : bytes) {
        advance(cur, (uint8_t)ch, next);
        if (next.empty()) return false;
        cur.swap(next);
    }
    states_.swap(cur);
    return true;
}

bool JsonMatcher::accepts(std::string_view bytes) const {
    States cur = states_, next;
    for (char ch : bytes) {
        advance(cur, (uint8_t)ch, next);
        if (next.empty()) return false;
        cur.swap(next);
    }
    return true;
}

bool JsonMatcher::stack_can_end(const Stack& s) const {
    // Complete without more input: the innermost value is a number or literal that may end
    // here, and every frame around it is a sequence with no part left to begin.
    for (size_t i = s.size(); i-- > 0;) {
        const Frame& f = s[i];
        const JsonSchema::Node& n = schema_->nodes[(size_t)f.node];
        const bool top = i + 1 == s.size();
        if (n.kind == Kind::Sequence) {
            if (f.a < (int32_t)n.alternatives.size()) return false;
        } else if (top && (n.kind == Kind::Number || n.kind == Kind::Integer)) {
            if (!number_accepting(f.phase)) return false;
        } else if (top && n.kind == Kind::Literal) {
            if (!(f.phase == kLitBody && f.pos > 0 &&
                  n.literals[(size_t)f.a].size() == (size_t)f.pos))
                return false;
        } else {
            return false;
        }
    }
    return true;
}

bool JsonMatcher::can_end() const {
    for (const Stack& s : states_)
        if (stack_can_end(s)) return true;
    return false;
}

bool JsonMatcher::finished() const {
    States next;
    for (int c = 0; c < 256; ++c) {
        advance(states_, (uint8_t)c, next);
        if (!next.empty()) return false;
    }
    return true;
}

bool JsonMatcher::plain_text_keeps_state(const States& states) const {
    if (states.empty()) return false;
    for (const Stack& st : states) {
        if (st.empty()) return false;
        const Frame& f = st.back();
        const JsonSchema::Node& n = schema_->nodes[(size_t)f.node];
        if (!(n.kind == Kind::String && f.phase == kStrBody && n.max_length < 0 &&
              f.a >= n.min_length && n.exclude_keys_of < 0))
            return false;
    }
    return true;
}

void JsonMatcher::walk(const TokenTrie& trie, int32_t node, const States& states, int depth,
                       std::deque<States>& scratch, std::vector<uint8_t>& allowed,
                       int64_t& budget) const {
    if ((size_t)depth >= scratch.size()) scratch.emplace_back();  // deque: no reference moves
    States& next = scratch[(size_t)depth];
    const auto& nodes = trie.nodes();
    // Inside an unbounded string, printable ASCII other than '"' and '\\' leaves the state
    // as it is: those children continue from the same state without copying it.
    const bool in_text = plain_text_keeps_state(states);
    for (int32_t child = nodes[(size_t)node].first_child; child >= 0;
         child = nodes[(size_t)child].next_sibling) {
        const TokenTrie::Node& tn = nodes[(size_t)child];
        if (in_text && tn.byte >= 0x20 && tn.byte < 0x7F && tn.byte != '"' && tn.byte != '\\') {
            for (int32_t i = tn.tok_begin; i < tn.tok_end; ++i)
                allowed[(size_t)trie.tokens()[(size_t)i]] = 1;
            if (tn.first_child >= 0) walk(trie, child, states, depth + 1, scratch, allowed, budget);
            continue;
        }
        for (const Stack& st : states) budget -= (int64_t)st.size() + 1;
        if (budget < 0) return;  // too costly: the caller checks tokens one by one instead
        advance(states, tn.byte, next);
        if (next.empty()) continue;
        for (int32_t i = tn.tok_begin; i < tn.tok_end; ++i)
            allowed[(size_t)trie.tokens()[(size_t)i]] = 1;
        if (tn.first_child >= 0) walk(trie, child, next, depth + 1, scratch, allowed, budget);
    }
}

bool JsonMatcher::allowed_tokens(const TokenTrie& trie, std::vector<uint8_t>& allowed) const {
    allowed.assign((size_t)trie.n_vocab(), 0);
    if (can_end())
        for (int32_t t : trie.end_of_generation()) allowed[(size_t)t] = 1;
    std::deque<States> scratch;
    int64_t budget = kWalkBudget;
    walk(trie, 0, states_, 0, scratch, allowed, budget);
    return budget >= 0;
}

}  // namespace lokal
