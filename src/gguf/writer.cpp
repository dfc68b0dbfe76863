// GGUF v3 writer. Metadata is encoded as it is set, so copying a value read from another
// file is a byte copy; tensors are streamed from the caller's buffers at write time so a
// multi-gigabyte model never needs a second in-memory copy.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include "gguf/gguf.h"

namespace lokal::gguf {

namespace {

constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr const char* kAlignmentKey = "general.alignment";

template <typename T>
void append(std::vector<uint8_t>& out, T v) {
    const size_t n = out.size();
    out.resize(n + sizeof(T));
    std::memcpy(out.data() + n, &v, sizeof(T));
}

void append_string(std::vector<uint8_t>& out, std::string_view s) {
    append<uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
}

std::vector<uint8_t> tagged(ValueType t) {
    std::vector<uint8_t> e;
    append<uint32_t>(e, (uint32_t)t);
    return e;
}

template <typename T>
std::vector<uint8_t> scalar(ValueType t, T v) {
    std::vector<uint8_t> e = tagged(t);
    append<T>(e, v);
    return e;
}

template <typename T>
std::vector<uint8_t> numeric_array(ValueType et, const std::vector<T>& v) {
    std::vector<uint8_t> e = tagged(ValueType::ARRAY);
    append<uint32_t>(e, (uint32_t)et);
    append<uint64_t>(e, v.size());
    const size_t n = e.size();
    e.resize(n + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(e.data() + n, v.data(), v.size() * sizeof(T));
    return e;
}

// Re-encodes a Value from its decoded fields, for values that were not read from a file
// (their `raw` is empty).
std::vector<uint8_t> encode_fields(const Value& v) {
    std::vector<uint8_t> e = tagged(v.type);
    switch (v.type) {
        case ValueType::UINT8:
            append<uint8_t>(e, (uint8_t)v.u);
            break;
        case ValueType::BOOL:
            append<uint8_t>(e, v.u ? 1 : 0);
            break;
        case ValueType::UINT16:
            append<uint16_t>(e, (uint16_t)v.u);
            break;
        case ValueType::UINT32:
            append<uint32_t>(e, (uint32_t)v.u);
            break;
        case ValueType::UINT64:
            append<uint64_t>(e, v.u);
            break;
        case ValueType::INT8:
            append<int8_t>(e, (int8_t)v.i);
            break;
        case ValueType::INT16:
            append<int16_t>(e, (int16_t)v.i);
            break;
        case ValueType::INT32:
            append<int32_t>(e, (int32_t)v.i);
            break;
        case ValueType::INT64:
            append<int64_t>(e, v.i);
            break;
        case ValueType::FLOAT32:
            append<float>(e, (float)v.f);
            break;
        case ValueType::FLOAT64:
            append<double>(e, v.f);
            break;
        case ValueType::STRING:
            append_string(e, v.str);
            break;
        case ValueType::ARRAY: {
            append<uint32_t>(e, (uint32_t)v.elem_type);
            if (v.elem_type == ValueType::STRING) {
                if (v.strings.size() != v.count)
                    throw Error("gguf: writer: string array count does not match its strings");
                append<uint64_t>(e, v.count);
                for (std::string_view s : v.strings) append_string(e, s);
            } else {
                const size_t es = value_type_size(v.elem_type);
                if (es == 0) throw Error("gguf: writer: unsupported array element type");
                append<uint64_t>(e, v.count);
                if (v.count && !v.elems) throw Error("gguf: writer: array without data");
                e.insert(e.end(), v.elems, v.elems + v.count * es);
            }
            break;
        }
        default:
            throw Error("gguf: writer: unknown value type " + std::to_string((int)v.type));
    }
    return e;
}

bool valid_alignment(uint64_t a) {
    return a != 0 && (a & (a - 1)) == 0 && a <= kMaxAlignment;
}

uint64_t align_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

}  // namespace

void Writer::put(const std::string& key, std::vector<uint8_t> encoded) {
    if (key.empty()) throw Error("gguf: writer: empty key");
    if (key.size() > kMaxStringLength) throw Error("gguf: writer: key too long");
    if (key == kAlignmentKey) {
        // The alignment key governs the layout, so keep alignment_ in sync with it.
        uint32_t t;
        std::memcpy(&t, encoded.data(), 4);
        const ValueType vt = (ValueType)t;
        uint64_t a = 0;
        const size_t n = value_type_size(vt);
        const bool is_uint = vt == ValueType::UINT8 || vt == ValueType::UINT16 ||
                             vt == ValueType::UINT32 || vt == ValueType::UINT64;
        if (!is_uint || encoded.size() != 4 + n)
            throw Error("gguf: writer: general.alignment must be an unsigned integer");
        std::memcpy(&a, encoded.data() + 4, n);  // little-endian: low bytes first
        if (!valid_alignment(a)) {
            throw Error("gguf: writer: general.alignment " + std::to_string(a) +
                        " is not a power of two between 1 and " + std::to_string(kMaxAlignment));
        }
        alignment_ = a;
    }
    for (Entry& e : entries_) {
        if (e.key == key) {
            e.encoded = std::move(encoded);
            return;
        }
    }
    entries_.push_back(Entry{key, std::move(encoded)});
}

void Writer::set_u8(const std::string& k, uint8_t v) {
    put(k, scalar(ValueType::UINT8, v));
}
void Writer::set_i8(const std::string& k, int8_t v) {
    put(k, scalar(ValueType::INT8, v));
}
void Writer::set_u16(const std::string& k, uint16_t v) {
    put(k, scalar(ValueType::UINT16, v));
}
void Writer::set_i16(const std::string& k, int16_t v) {
    put(k, scalar(ValueType::INT16, v));
}
void Writer::set_u32(const std::string& k, uint32_t v) {
    put(k, scalar(ValueType::UINT32, v));
}
void Writer::set_i32(const std::string& k, int32_t v) {
    put(k, scalar(ValueType::INT32, v));
}
void Writer::set_u64(const std::string& k, uint64_t v) {
    put(k, scalar(ValueType::UINT64, v));
}
void Writer::set_i64(const std::string& k, int64_t v) {
    put(k, scalar(ValueType::INT64, v));
}
void Writer::set_f32(const std::string& k, float v) {
    put(k, scalar(ValueType::FLOAT32, v));
}
void Writer::set_f64(const std::string& k, double v) {
    put(k, scalar(ValueType::FLOAT64, v));
}
void Writer::set_bool(const std::string& k, bool v) {
    put(k, scalar<uint8_t>(ValueType::BOOL, v ? 1 : 0));
}

void Writer::set_string(const std::string& key, std::string_view v) {
    if (v.size() > kMaxStringLength) throw Error("gguf: writer: string value too long");
    std::vector<uint8_t> e = tagged(ValueType::STRING);
    append_string(e, v);
    put(key, std::move(e));
}

void Writer::set_array_string(const std::string& key, const std::vector<std::string>& v) {
    std::vector<uint8_t> e = tagged(ValueType::ARRAY);
    append<uint32_t>(e, (uint32_t)ValueType::STRING);
    append<uint64_t>(e, v.size());
    for (const std::string& s : v) append_string(e, s);
    put(key, std::move(e));
}

void Writer::set_array_f32(const std::string& key, const std::vector<float>& v) {
    put(key, numeric_array(ValueType::FLOAT32, v));
}
void Writer::set_array_i32(const std::string& key, const std::vector<int32_t>& v) {
    put(key, numeric_array(ValueType::INT32, v));
}
void Writer::set_array_u32(const std::string& key, const std::vector<uint32_t>& v) {
    put(key, numeric_array(ValueType::UINT32, v));
}

void Writer::copy_value(const std::string& key, const Value& v) {
    if (v.raw.empty()) {
        put(key, encode_fields(v));
        return;
    }
    // raw holds the value exactly as encoded after its type tag.
    std::vector<uint8_t> e = tagged(v.type);
    e.insert(e.end(), v.raw.begin(), v.raw.end());
    put(key, std::move(e));
}

bool Writer::has(const std::string& key) const {
    for (const Entry& e : entries_)
        if (e.key == key) return true;
    return false;
}

void Writer::remove(const std::string& key) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->key == key) {
            entries_.erase(it);
            break;
        }
    }
    if (key == kAlignmentKey) alignment_ = kDefaultAlignment;
}

void Writer::add_tensor(const std::string& name, TensorType type, std::vector<int64_t> ne,
                        const void* data) {
    const std::string what = "gguf: writer: tensor '" + name + "': ";
    if (name.empty()) throw Error("gguf: writer: empty tensor name");
    for (const PendingTensor& t : tensors_)
        if (t.name == name) throw Error(what + "duplicate tensor name");
    if (!is_valid_type_id((uint32_t)type)) throw Error(what + "unknown tensor type");
    if (ne.empty() || ne.size() > (size_t)kMaxDims) throw Error(what + "needs 1 to 4 dimensions");
    int64_t n = 1;
    for (int64_t d : ne) {
        if (d < 1) throw Error(what + "dimension " + std::to_string(d) + " is not positive");
        if (__builtin_mul_overflow(n, d, &n)) throw Error(what + "element count overflows");
    }
    const TypeTraits& tr = type_traits(type);
    if (ne[0] % tr.block_size != 0) {
        throw Error(what + "row length " + std::to_string(ne[0]) + " is not a multiple of " +
                    std::to_string(tr.block_size));
    }
    if (!data) throw Error(what + "null data");
    tensors_.push_back(PendingTensor{name, type, std::move(ne), data});
}

void Writer::set_alignment(uint64_t alignment) {
    if (!valid_alignment(alignment)) {
        throw Error("gguf: writer: alignment " + std::to_string(alignment) +
                    " is not a power of two between 1 and " + std::to_string(kMaxAlignment));
    }
    if (alignment != kDefaultAlignment || has(kAlignmentKey)) {
        set_u32(kAlignmentKey, (uint32_t)alignment);  // updates alignment_ through put()
    }
    alignment_ = alignment;
}

namespace {

uint64_t tensor_bytes(TensorType type, const std::vector<int64_t>& ne) {
    uint64_t rows = 1;
    for (size_t d = 1; d < ne.size(); ++d) rows *= (uint64_t)ne[d];
    uint64_t bytes = 0;
    if (__builtin_mul_overflow((uint64_t)row_size(type, ne[0]), rows, &bytes))
        throw Error("gguf: writer: tensor byte size overflows");
    return bytes;
}

}  // namespace

std::vector<uint8_t> Writer::to_bytes() const {
    std::vector<uint8_t> out;
    write_to([&](const void* p, size_t n) {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        out.insert(out.end(), b, b + n);
    });
    return out;
}

void Writer::write_to(const std::function<void(const void*, size_t)>& sink) const {
    std::vector<uint8_t> head;
    head.insert(head.end(), {'G', 'G', 'U', 'F'});
    append<uint32_t>(head, kVersion);
    append<uint64_t>(head, tensors_.size());
    append<uint64_t>(head, entries_.size());
    for (const Entry& e : entries_) {
        append_string(head, e.key);
        head.insert(head.end(), e.encoded.begin(), e.encoded.end());
    }
    std::vector<uint64_t> sizes;
    sizes.reserve(tensors_.size());
    uint64_t offset = 0;
    for (const PendingTensor& t : tensors_) {
        append_string(head, t.name);
        append<uint32_t>(head, (uint32_t)t.ne.size());
        for (int64_t d : t.ne) append<uint64_t>(head, (uint64_t)d);
        append<uint32_t>(head, (uint32_t)t.type);
        append<uint64_t>(head, offset);
        const uint64_t n = tensor_bytes(t.type, t.ne);
        sizes.push_back(n);
        offset = align_up(offset + n, alignment_);
    }
    const std::vector<uint8_t> zeros(alignment_, 0);
    const size_t head_size = head.size();
    head.resize(align_up(head_size, alignment_), 0);
    sink(head.data(), head.size());
    for (size_t k = 0; k < tensors_.size(); ++k) {
        sink(tensors_[k].data, (size_t)sizes[k]);
        const uint64_t pad = align_up(sizes[k], alignment_) - sizes[k];
        if (pad) sink(zeros.data(), (size_t)pad);
    }
}

void Writer::write(const std::string& path) const {
    // Write beside the destination so the final rename is atomic (same file system).
    std::string tmp = path + ".tmp.XXXXXX";
    int fd = mkstemp(tmp.data());
    if (fd < 0) {
        throw Error("gguf: writer: cannot create a temporary file beside " + path + ": " +
                    std::strerror(errno));
    }
    auto fail = [&](const std::string& what, int err) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw Error("gguf: writer: " + path + ": " + what + ": " + std::strerror(err));
    };
    try {
        write_to([&](const void* p, size_t n) {
            const char* b = static_cast<const char*>(p);
            while (n > 0) {
                ssize_t w = ::write(fd, b, n);
                if (w < 0) {
                    if (errno == EINTR) continue;
                    throw Error("gguf: writer: " + path +
                                ": write failed: " + std::strerror(errno));
                }
                b += w;
                n -= (size_t)w;
            }
        });
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    // mkstemp makes the file 0600; a model file is ordinarily world-readable.
    if (fchmod(fd, 0644) != 0) fail("chmod failed", errno);
    if (fsync(fd) != 0) fail("fsync failed", errno);
    if (::close(fd) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw Error("gguf: writer: " + path + ": close failed: " + std::strerror(e));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw Error("gguf: writer: " + path + ": rename failed: " + std::strerror(e));
    }
    // Persist the rename itself.
    std::string dir = ".";
    if (size_t slash = path.rfind('/'); slash != std::string::npos)
        dir = slash == 0 ? "/" : path.substr(0, slash);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace lokal::gguf
