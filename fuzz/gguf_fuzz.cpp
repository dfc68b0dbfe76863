// libFuzzer target for the GGUF reader: any input must either parse or throw gguf::Error,
// and everything a parsed file exposes must be readable without leaving the buffer.
#include <cstddef>
#include <cstdint>
#include <string>

#include "gguf/gguf.h"

using namespace lokal::gguf;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        auto f = File::from_memory(data, size);
        volatile uint64_t sink = f->version() + f->alignment() + f->data_offset();
        for (const KeyValue& kv : f->metadata()) {
            const Value& v = kv.value;
            sink = sink + v.raw.size() + v.str.size() + (f->find(kv.key) == &v);
            for (std::string_view s : v.strings) sink = sink + (s.empty() ? 0 : (uint8_t)s.back());
            if (v.type == ValueType::ARRAY && v.elem_type != ValueType::STRING) {
                for (uint64_t i = 0; i < v.count && i < 64; ++i)
                    sink = sink + (uint64_t)v.elem_int(i) + (uint64_t)(v.elem_float(i) != 0);
                if (v.count) sink = sink + (uint64_t)v.elem_int(v.count - 1);
            }
            // Every getter either answers or throws Error; none may crash.
            try {
                (void)f->get_uint(kv.key);
            } catch (const Error&) {
            }
            try {
                (void)f->get_int(kv.key);
            } catch (const Error&) {
            }
            try {
                (void)f->get_float(kv.key);
            } catch (const Error&) {
            }
            try {
                (void)f->get_bool(kv.key);
            } catch (const Error&) {
            }
            try {
                (void)f->get_string(kv.key);
            } catch (const Error&) {
            }
            try {
                (void)f->get_array(kv.key);
            } catch (const Error&) {
            }
        }
        for (const TensorInfo& t : f->tensors()) {
            // First and last byte of every tensor: ASan catches a range outside the input.
            sink = sink + t.data[0] + t.data[t.n_bytes - 1] + (uint64_t)t.n_elements();
            sink = sink + (f->find_tensor(t.name) == &t);
        }
        (void)sink;
    } catch (const Error& e) {
        // Messages are one line by contract.
        std::string m = e.what();
        if (m.empty() || m.find('\n') != std::string::npos) __builtin_trap();
    }
    return 0;
}
