#include "tokenizer/detokenize.h"

#include "tokenizer/unicode.h"

namespace lokal {

namespace {
constexpr const char* kReplacementUtf8 = "\xEF\xBF\xBD";
}

std::string StreamingDetokenizer::push(TokenId id) {
    pending_ += vocab_.token_to_piece(id, render_special_);
    return drain(false);
}

std::string StreamingDetokenizer::flush() {
    return drain(true);
}

std::string StreamingDetokenizer::drain(bool final) {
    std::string out;
    out.reserve(pending_.size());
    const std::string_view p(pending_);
    size_t i = 0;
    while (i < p.size()) {
        size_t invalid_len = 1;
        const int r = unicode::utf8_check(p.substr(i), invalid_len);
        if (r > 0) {
            out.append(p.substr(i, static_cast<size_t>(r)));
            i += static_cast<size_t>(r);
        } else if (r == 0) {  // incomplete tail
            if (!final) break;
            out += kReplacementUtf8;
            i = p.size();
        } else {
            out += kReplacementUtf8;
            i += invalid_len;
        }
    }
    pending_.erase(0, i);
    return out;
}

}  // namespace lokal
