// GGUF reader: maps the file and validates every structure before anything uses it.
//
// The parser reads through a bounds-checked cursor, so a truncated or hostile file can
// only ever produce a gguf::Error; it never reads outside [base, base + size).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "gguf/gguf.h"

namespace lokal::gguf {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader decodes little-endian values in place");

const char* value_type_name(ValueType t) {
    switch (t) {
        case ValueType::UINT8:
            return "uint8";
        case ValueType::INT8:
            return "int8";
        case ValueType::UINT16:
            return "uint16";
        case ValueType::INT16:
            return "int16";
        case ValueType::UINT32:
            return "uint32";
        case ValueType::INT32:
            return "int32";
        case ValueType::FLOAT32:
            return "float32";
        case ValueType::BOOL:
            return "bool";
        case ValueType::STRING:
            return "string";
        case ValueType::ARRAY:
            return "array";
        case ValueType::UINT64:
            return "uint64";
        case ValueType::INT64:
            return "int64";
        case ValueType::FLOAT64:
            return "float64";
    }
    return "unknown";
}

size_t value_type_size(ValueType t) {
    switch (t) {
        case ValueType::UINT8:
        case ValueType::INT8:
        case ValueType::BOOL:
            return 1;
        case ValueType::UINT16:
        case ValueType::INT16:
            return 2;
        case ValueType::UINT32:
        case ValueType::INT32:
        case ValueType::FLOAT32:
            return 4;
        case ValueType::UINT64:
        case ValueType::INT64:
        case ValueType::FLOAT64:
            return 8;
        case ValueType::STRING:
        case ValueType::ARRAY:
            return 0;
    }
    return 0;
}

namespace {

bool is_known_value_type(uint32_t raw) {
    return raw <= (uint32_t)ValueType::FLOAT64;
}

std::string quote(std::string_view s) {
    // Names come from untrusted files: keep messages on one line and bounded in size.
    constexpr size_t kMax = 80;
    std::string out = "'";
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < s.size() && i < kMax; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += (char)c;
        }
    }
    if (s.size() > kMax) out += "...";
    out += "'";
    return out;
}

bool is_signed_int(ValueType t) {
    return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
           t == ValueType::INT64;
}
bool is_unsigned_int(ValueType t) {
    return t == ValueType::UINT8 || t == ValueType::UINT16 || t == ValueType::UINT32 ||
           t == ValueType::UINT64;
}

template <typename T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));  // unaligned-safe; the format is little-endian like us
    return v;
}

// Decodes one little-endian scalar of type t at p into the matching Value field.
void decode_scalar(ValueType t, const uint8_t* p, Value& v) {
    switch (t) {
        case ValueType::UINT8:
            v.u = load<uint8_t>(p);
            break;
        case ValueType::BOOL:
            v.u = load<uint8_t>(p);
            break;
        case ValueType::UINT16:
            v.u = load<uint16_t>(p);
            break;
        case ValueType::UINT32:
            v.u = load<uint32_t>(p);
            break;
        case ValueType::UINT64:
            v.u = load<uint64_t>(p);
            break;
        case ValueType::INT8:
            v.i = load<int8_t>(p);
            break;
        case ValueType::INT16:
            v.i = load<int16_t>(p);
            break;
        case ValueType::INT32:
            v.i = load<int32_t>(p);
            break;
        case ValueType::INT64:
            v.i = load<int64_t>(p);
            break;
        case ValueType::FLOAT32:
            v.f = load<float>(p);
            break;
        case ValueType::FLOAT64:
            v.f = load<double>(p);
            break;
        case ValueType::STRING:
        case ValueType::ARRAY:
            break;
    }
}

// Minimum encoded sizes, used to reject counts the remaining bytes cannot possibly hold
// before anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;  // key length, type tag, a uint8
constexpr uint64_t kMinTensorInfoBytes =
    8 + 4 + 8 + 4 + 8;  // name len, n_dims, ne[0], type, offset

class Cursor {
  public:
    Cursor(const uint8_t* base, size_t size, const std::string& prefix)
        : base_(base), size_(size), prefix_(prefix) {}

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(prefix_ + context_ + what);
    }
    // What is being parsed ("key 'x': "), so that truncation messages name it.
    void set_context(std::string context) { context_ = std::move(context); }

    size_t pos() const { return pos_; }
    uint64_t remaining() const { return size_ - pos_; }

    // Returns a pointer to n bytes at the cursor and advances, or fails naming `what`.
    const uint8_t* take(uint64_t n, const char* what) {
        if (n > remaining()) {
            fail(std::string("truncated: ") + what + " needs " + std::to_string(n) +
                 " bytes at offset " + std::to_string(pos_) + " but the file has " +
                 std::to_string(remaining()) + " left (size " + std::to_string(size_) + ")");
        }
        const uint8_t* p = base_ + pos_;
        pos_ += (size_t)n;
        return p;
    }
    template <typename T>
    T read(const char* what) {
        return load<T>(take(sizeof(T), what));
    }
    std::string_view string(const char* what) {
        uint64_t len = read<uint64_t>(what);
        if (len > kMaxStringLength) {
            fail(std::string(what) + " length " + std::to_string(len) + " exceeds the cap of " +
                 std::to_string(kMaxStringLength) + " bytes");
        }
        const uint8_t* p = take(len, what);
        return std::string_view(reinterpret_cast<const char*>(p), (size_t)len);
    }

  private:
    const uint8_t* base_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& prefix_;
    std::string context_;
};

// Parses the value of type t at the cursor into v.
void parse_value(Cursor& c, ValueType t, Value& v) {
    auto fail = [&](const std::string& what) { c.fail(what); };
    const size_t start = c.pos();
    const uint8_t* start_ptr = c.take(0, "value");
    v.type = t;
    if (t == ValueType::STRING) {
        v.str = c.string("string value");
    } else if (t == ValueType::ARRAY) {
        uint32_t et = c.read<uint32_t>("array element type");
        if (!is_known_value_type(et)) fail("unknown array element type " + std::to_string(et));
        v.elem_type = (ValueType)et;
        if (v.elem_type == ValueType::ARRAY) fail("nested arrays are not supported");
        v.count = c.read<uint64_t>("array count");
        if (v.count > kMaxArrayCount) {
            fail("array count " + std::to_string(v.count) + " exceeds the cap of " +
                 std::to_string(kMaxArrayCount));
        }
        if (v.elem_type == ValueType::STRING) {
            // Each string needs at least its 8-byte length: check before reserving.
            if (v.count > c.remaining() / 8) {
                fail("array of " + std::to_string(v.count) + " strings cannot fit in the " +
                     std::to_string(c.remaining()) + " bytes left");
            }
            v.strings.reserve((size_t)v.count);
            for (uint64_t k = 0; k < v.count; ++k) v.strings.push_back(c.string("array string"));
        } else {
            const uint64_t es = value_type_size(v.elem_type);
            uint64_t n = 0;
            if (__builtin_mul_overflow(v.count, es, &n) || n > c.remaining()) {
                fail("array of " + std::to_string(v.count) + " " + value_type_name(v.elem_type) +
                     " extends past end of file");
            }
            v.elems = c.take(n, "array data");
            if (v.elem_type == ValueType::BOOL) {
                for (uint64_t k = 0; k < v.count; ++k) {
                    if (v.elems[k] > 1) {
                        fail("bool array element " + std::to_string(k) + " has value " +
                             std::to_string(v.elems[k]) + " (must be 0 or 1)");
                    }
                }
            }
        }
    } else {
        decode_scalar(t, c.take(value_type_size(t), value_type_name(t)), v);
        if (t == ValueType::BOOL && v.u > 1) {
            fail("bool value " + std::to_string(v.u) + " (must be 0 or 1)");
        }
    }
    v.raw = std::span<const uint8_t>(start_ptr, c.pos() - start);
}

}  // namespace

bool Value::is_integer() const {
    return is_signed_int(type) || is_unsigned_int(type);
}
bool Value::is_float() const {
    return type == ValueType::FLOAT32 || type == ValueType::FLOAT64;
}

int64_t Value::elem_int(uint64_t idx) const {
    Value e;
    decode_scalar(elem_type, elems + idx * value_type_size(elem_type), e);
    if (is_signed_int(elem_type)) return e.i;
    if (elem_type == ValueType::FLOAT32 || elem_type == ValueType::FLOAT64) {
        // Saturate rather than invoke undefined behaviour on out-of-range floats.
        if (!(e.f == e.f)) return 0;
        if (e.f >= 9.2233720368547758e18) return std::numeric_limits<int64_t>::max();
        if (e.f <= -9.2233720368547758e18) return std::numeric_limits<int64_t>::min();
        return (int64_t)e.f;
    }
    return (int64_t)e.u;  // unsigned and bool; a uint64 above INT64_MAX wraps
}

double Value::elem_float(uint64_t idx) const {
    Value e;
    decode_scalar(elem_type, elems + idx * value_type_size(elem_type), e);
    if (is_signed_int(elem_type)) return (double)e.i;
    if (elem_type == ValueType::FLOAT32 || elem_type == ValueType::FLOAT64) return e.f;
    return (double)e.u;
}

// ---- File ---------------------------------------------------------------------------------

std::unique_ptr<File> File::open(const std::string& path) {
    const std::string prefix = "gguf: " + path + ": ";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(prefix + "cannot open: " + std::strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        throw Error(prefix + "cannot stat: " + std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(prefix + "not a regular file");
    }
    const size_t size = (size_t)st.st_size;
    void* p = nullptr;
    if (size > 0) {
        p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            ::close(fd);
            throw Error(prefix + "cannot mmap: " + std::strerror(e));
        }
    }
    ::close(fd);  // the mapping keeps the file alive

    std::unique_ptr<File> f(new File());
    f->path_ = path;
    f->base_ = static_cast<const uint8_t*>(p);
    f->size_ = size;
    f->mapped_ = size > 0;
    f->parse();  // on throw, ~File unmaps
    return f;
}

std::unique_ptr<File> File::from_memory(const uint8_t* data, size_t size) {
    std::unique_ptr<File> f(new File());
    // An empty span may come with a null pointer; the cursor never dereferences it then.
    f->base_ = data;
    f->size_ = data ? size : 0;
    f->parse();
    return f;
}

File::~File() {
    if (mapped_) munmap(const_cast<uint8_t*>(base_), size_);
}

void File::parse() {
    const std::string prefix = path_.empty() ? "gguf: " : "gguf: " + path_ + ": ";
    Cursor c(base_, size_, prefix);

    const uint8_t* magic = c.take(4, "magic");
    if (std::memcmp(magic, "GGUF", 4) != 0) {
        c.fail("bad magic (not a GGUF file): first bytes " +
               quote(std::string_view((const char*)magic, 4)));
    }
    version_ = c.read<uint32_t>("version");
    if (version_ == 1) c.fail("GGUF version 1 is not supported (only versions 2 and 3)");
    if (version_ != 2 && version_ != 3) {
        // A big-endian writer stores 3 as 0x03000000.
        if (__builtin_bswap32(version_) == 2 || __builtin_bswap32(version_) == 3)
            c.fail("big-endian GGUF files are not supported");
        c.fail("unsupported GGUF version " + std::to_string(version_) + " (only versions 2 and 3)");
    }
    const uint64_t n_tensors = c.read<uint64_t>("tensor count");
    const uint64_t n_kv = c.read<uint64_t>("metadata count");
    if (n_tensors > kMaxTensors) {
        c.fail("tensor count " + std::to_string(n_tensors) + " exceeds the cap of " +
               std::to_string(kMaxTensors));
    }
    if (n_kv > kMaxKeyValues) {
        c.fail("metadata count " + std::to_string(n_kv) + " exceeds the cap of " +
               std::to_string(kMaxKeyValues));
    }
    // Both products are small (caps are 2^20, sizes < 2^6), so no overflow here.
    if (n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes > c.remaining()) {
        c.fail(std::to_string(n_kv) + " key-values and " + std::to_string(n_tensors) +
               " tensor infos cannot fit in the " + std::to_string(c.remaining()) + " bytes left");
    }

    // Reserved exactly, so the string_views the indexes hold into the names never move.
    kv_.reserve((size_t)n_kv);
    kv_index_.reserve((size_t)n_kv);
    for (uint64_t k = 0; k < n_kv; ++k) {
        std::string_view key = c.string("key");
        if (key.empty()) c.fail("metadata entry " + std::to_string(k) + " has an empty key");
        if (kv_index_.count(key)) c.fail("duplicate key " + quote(key));
        c.set_context("key " + quote(key) + ": ");
        uint32_t t = c.read<uint32_t>("value type");
        if (!is_known_value_type(t)) {
            c.fail("unknown value type " + std::to_string(t));
        }
        kv_.push_back(KeyValue{std::string(key), Value{}});
        parse_value(c, (ValueType)t, kv_.back().value);
        c.set_context("");
        kv_index_.emplace(kv_.back().key, kv_.size() - 1);
    }

    if (const Value* a = find("general.alignment")) {
        if (!a->is_integer() || (is_signed_int(a->type) && a->i < 0)) {
            c.fail(std::string("general.alignment must be an unsigned integer, not ") +
                   value_type_name(a->type));
        }
        const uint64_t al = is_signed_int(a->type) ? (uint64_t)a->i : a->u;
        if (al == 0 || (al & (al - 1)) != 0 || al > kMaxAlignment) {
            c.fail("general.alignment " + std::to_string(al) +
                   " is not a power of two between 1 and " + std::to_string(kMaxAlignment));
        }
        alignment_ = al;
    }

    tensors_.reserve((size_t)n_tensors);
    tensor_index_.reserve((size_t)n_tensors);
    for (uint64_t k = 0; k < n_tensors; ++k) {
        c.set_context("");
        std::string_view name = c.string("tensor name");
        if (name.empty()) c.fail("tensor " + std::to_string(k) + " has an empty name");
        if (tensor_index_.count(name)) c.fail("duplicate tensor name " + quote(name));
        c.set_context("tensor " + quote(name) + ": ");
        auto tfail = [&](const std::string& what) { c.fail(what); };
        TensorInfo ti;
        ti.name = std::string(name);
        uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
        if (n_dims < 1 || n_dims > (uint32_t)kMaxDims) {
            tfail("dimension count " + std::to_string(n_dims) + " is not in 1.." +
                  std::to_string(kMaxDims));
        }
        ti.n_dims = (int)n_dims;
        int64_t n_elem = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            uint64_t ne = c.read<uint64_t>("tensor dimension");
            if (ne == 0 || ne > (uint64_t)std::numeric_limits<int64_t>::max()) {
                tfail("dimension " + std::to_string(d) + " has invalid size " + std::to_string(ne));
            }
            ti.ne[d] = (int64_t)ne;
            if (__builtin_mul_overflow(n_elem, ti.ne[d], &n_elem))
                tfail("element count overflows int64");
        }
        uint32_t type = c.read<uint32_t>("tensor type");
        if (!is_valid_type_id(type)) tfail("unknown tensor type " + std::to_string(type));
        ti.type = (TensorType)type;
        const TypeTraits& tr = type_traits(ti.type);
        if (ti.ne[0] % tr.block_size != 0) {
            tfail("row length " + std::to_string(ti.ne[0]) + " is not a multiple of the " +
                  tr.name + " block size " + std::to_string(tr.block_size));
        }
        // The element product fits int64, so rows and blocks do too; bytes may not.
        const uint64_t row_bytes = (uint64_t)(ti.ne[0] / tr.block_size) * (uint64_t)tr.type_size;
        if (__builtin_mul_overflow(row_bytes, (uint64_t)ti.n_rows(), &ti.n_bytes))
            tfail("byte size overflows");
        ti.offset = c.read<uint64_t>("tensor offset");
        if (ti.offset % alignment_ != 0) {
            tfail("offset " + std::to_string(ti.offset) + " is not a multiple of the alignment " +
                  std::to_string(alignment_));
        }
        tensors_.push_back(std::move(ti));
        tensor_index_.emplace(tensors_.back().name, tensors_.size() - 1);
    }
    c.set_context("");

    // The data section starts at the next multiple of the alignment. A file without
    // tensors may end before that padding; its data offset is then clamped to the size.
    uint64_t data_off = 0;
    const uint64_t here = c.pos();
    if (__builtin_add_overflow(here, alignment_ - 1, &data_off))
        c.fail("data section offset overflows");
    data_off -= data_off % alignment_;
    if (data_off > size_) {
        if (!tensors_.empty()) {
            c.fail("data section at " + std::to_string(data_off) +
                   " starts past end of file (size " + std::to_string(size_) + ")");
        }
        data_off = size_;
    }
    data_offset_ = data_off;

    for (TensorInfo& ti : tensors_) {
        uint64_t begin = 0, end = 0;
        if (__builtin_add_overflow(data_offset_, ti.offset, &begin) ||
            __builtin_add_overflow(begin, ti.n_bytes, &end) || end > size_) {
            c.fail("tensor " + quote(ti.name) + ": data [" + std::to_string(ti.offset) + ", " +
                   std::to_string(ti.offset) + "+" + std::to_string(ti.n_bytes) +
                   ") extends past end of file (size " + std::to_string(size_) + ")");
        }
        ti.data = base_ + begin;
    }

    // Overlapping tensors would alias each other's data: sort by offset and compare
    // neighbours (offsets and sizes are known in range by now).
    std::vector<size_t> order(tensors_.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
    for (size_t k = 1; k < order.size(); ++k) {
        const TensorInfo& prev = tensors_[order[k - 1]];
        const TensorInfo& cur = tensors_[order[k]];
        if (cur.offset < prev.offset + prev.n_bytes) {
            c.fail("tensor " + quote(cur.name) + " at offset " + std::to_string(cur.offset) +
                   " overlaps tensor " + quote(prev.name) + " [" + std::to_string(prev.offset) +
                   ", " + std::to_string(prev.offset + prev.n_bytes) + ")");
        }
    }
}

const Value* File::find(std::string_view key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void type_error(std::string_view key, const Value& v, const char* wanted) {
    throw Error("gguf: key " + quote(key) + " has type " + value_type_name(v.type) + ", wanted " +
                wanted);
}
}  // namespace

std::optional<uint64_t> File::get_uint(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (is_unsigned_int(v->type)) return v->u;
    if (is_signed_int(v->type)) {
        if (v->i < 0) {
            throw Error("gguf: key " + quote(key) + " is negative (" + std::to_string(v->i) +
                        "), wanted an unsigned integer");
        }
        return (uint64_t)v->i;
    }
    type_error(key, *v, "an unsigned integer");
}

std::optional<int64_t> File::get_int(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (is_signed_int(v->type)) return v->i;
    if (is_unsigned_int(v->type)) {
        if (v->u > (uint64_t)std::numeric_limits<int64_t>::max()) {
            throw Error("gguf: key " + quote(key) + " value " + std::to_string(v->u) +
                        " does not fit int64");
        }
        return (int64_t)v->u;
    }
    type_error(key, *v, "an integer");
}

std::optional<double> File::get_float(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_float()) return v->f;
    if (is_signed_int(v->type)) return (double)v->i;
    if (is_unsigned_int(v->type)) return (double)v->u;
    type_error(key, *v, "a number");
}

std::optional<bool> File::get_bool(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != ValueType::BOOL) type_error(key, *v, "bool");
    return v->u != 0;
}

std::optional<std::string_view> File::get_string(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != ValueType::STRING) type_error(key, *v, "string");
    return v->str;
}

const Value* File::get_array(std::string_view key) const {
    const Value* v = find(key);
    if (!v) return nullptr;
    if (v->type != ValueType::ARRAY) type_error(key, *v, "array");
    return v;
}

}  // namespace lokal::gguf
