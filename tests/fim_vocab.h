// A vocabulary with fill-in-the-middle tokens, for tests: no file in ../shared has them, so
// this writes ../shared's GPT-2 vocabulary plus Qwen2.5-Coder's three FIM markers (control
// tokens, appended at the end) as a vocabulary-only GGUF.
#pragma once

#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "shared_path.h"

namespace lokal::test {

inline const std::vector<std::string>& fim_markers() {
    static const std::vector<std::string> m = {"<|fim_prefix|>", "<|fim_suffix|>",
                                               "<|fim_middle|>"};
    return m;
}

// Writes the vocabulary to `path`; returns its token count.
inline int write_fim_vocab(const std::string& path) {
    auto f = gguf::File::open(shared_path("vocab/ggml-vocab-gpt-2.gguf"));
    gguf::Writer w;
    for (const gguf::KeyValue& kv : f->metadata()) w.copy_value(kv.key, kv.value);
    const gguf::Value* toks = f->get_array("tokenizer.ggml.tokens");
    std::vector<std::string> tokens(toks->strings.begin(), toks->strings.end());
    for (const std::string& t : fim_markers()) tokens.push_back(t);
    w.set_array_string("tokenizer.ggml.tokens", tokens);
    if (const gguf::Value* tt = f->get_array("tokenizer.ggml.token_type")) {
        std::vector<int32_t> types;
        for (uint64_t i = 0; i < tt->count; ++i) types.push_back((int32_t)tt->elem_int(i));
        types.resize(tokens.size(), 3);  // 3: control
        w.set_array_i32("tokenizer.ggml.token_type", types);
    }
    w.write(path);
    return (int)tokens.size();
}

}  // namespace lokal::test
