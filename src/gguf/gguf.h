// GGUF v2/v3 reader (memory-mapped, validated) and writer.
//
// The file is untrusted: open() checks every count, length, offset, dimension and byte
// size with overflow-safe arithmetic against the file size and sane caps, and throws
// gguf::Error with one line naming the problem. Tensor data is used in place from the
// mapping; nothing is copied to the heap.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "quant/types.h"

namespace lokal::gguf {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class ValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

const char* value_type_name(ValueType t);
// Bytes of one encoded scalar of type t (BOOL is 1); 0 for STRING and ARRAY.
size_t value_type_size(ValueType t);

// A metadata value as it lies in the mapping. Scalars are decoded; strings and arrays
// point into the mapping (strings are not NUL-terminated).
struct Value {
    ValueType type = ValueType::UINT8;
    // Scalars: exactly one of these is meaningful, by `type`.
    uint64_t u = 0;        // UINT8..UINT64, BOOL
    int64_t i = 0;         // INT8..INT64
    double f = 0;          // FLOAT32, FLOAT64
    std::string_view str;  // STRING
    // ARRAY: element type, count, and for numeric elements the packed little-endian data.
    ValueType elem_type = ValueType::UINT8;
    uint64_t count = 0;
    const uint8_t* elems = nullptr;         // numeric arrays: count * size_of(elem_type) bytes
    std::vector<std::string_view> strings;  // string arrays, decoded once at open
    // The encoded value bytes (after the key and type tag) for verbatim copies by a writer.
    std::span<const uint8_t> raw;

    bool is_integer() const;
    bool is_float() const;
    // Numeric element i of a numeric array, converted. Precondition: i < count.
    int64_t elem_int(uint64_t i) const;
    double elem_float(uint64_t i) const;
};

struct KeyValue {
    std::string key;
    Value value;
};

struct TensorInfo {
    std::string name;
    TensorType type = TensorType::F32;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the row length (innermost, contiguous)
    uint64_t offset = 0;           // relative to the data section start
    uint64_t n_bytes = 0;
    const uint8_t* data = nullptr;  // into the mapping

    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
};

class File {
  public:
    // Map and validate a file. Throws Error.
    static std::unique_ptr<File> open(const std::string& path);
    // Validate a buffer the caller keeps alive (fuzzing, tests). Throws Error.
    static std::unique_ptr<File> from_memory(const uint8_t* data, size_t size);
    ~File();
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    size_t file_size() const { return size_; }
    const std::string& path() const { return path_; }
    uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section

    const std::vector<KeyValue>& metadata() const { return kv_; }
    const Value* find(std::string_view key) const;

    // Typed getters: nullopt when the key is absent; Error when present with a type that
    // cannot represent the request (e.g. a string asked as an integer, a negative as uint).
    std::optional<uint64_t> get_uint(std::string_view key) const;
    std::optional<int64_t> get_int(std::string_view key) const;
    std::optional<double> get_float(std::string_view key) const;
    std::optional<bool> get_bool(std::string_view key) const;
    std::optional<std::string_view> get_string(std::string_view key) const;
    // An array value, or nullptr when absent; Error when present but not an array.
    const Value* get_array(std::string_view key) const;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;

  private:
    File() = default;
    void parse();

    std::string path_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<KeyValue> kv_;
    std::unordered_map<std::string_view, size_t> kv_index_;
    std::vector<TensorInfo> tensors_;
    std::unordered_map<std::string_view, size_t> tensor_index_;
};

// Caps applied to untrusted files (generous for real models, small enough to never
// allocate absurd amounts).
inline constexpr uint64_t kMaxStringLength = 64ull << 20;  // 64 MiB per string
inline constexpr uint64_t kMaxArrayCount = 1ull << 26;     // 67M elements
inline constexpr uint64_t kMaxKeyValues = 1ull << 20;
inline constexpr uint64_t kMaxTensors = 1ull << 20;
inline constexpr uint64_t kMaxAlignment = 1ull << 20;
inline constexpr int kMaxDims = 4;

// Builds a GGUF v3 file: metadata in insertion order, then tensor infos, then aligned data.
class Writer {
  public:
    void set_u8(const std::string& key, uint8_t v);
    void set_i8(const std::string& key, int8_t v);
    void set_u16(const std::string& key, uint16_t v);
    void set_i16(const std::string& key, int16_t v);
    void set_u32(const std::string& key, uint32_t v);
    void set_i32(const std::string& key, int32_t v);
    void set_u64(const std::string& key, uint64_t v);
    void set_i64(const std::string& key, int64_t v);
    void set_f32(const std::string& key, float v);
    void set_f64(const std::string& key, double v);
    void set_bool(const std::string& key, bool v);
    void set_string(const std::string& key, std::string_view v);
    void set_array_string(const std::string& key, const std::vector<std::string>& v);
    void set_array_f32(const std::string& key, const std::vector<float>& v);
    void set_array_i32(const std::string& key, const std::vector<int32_t>& v);
    void set_array_u32(const std::string& key, const std::vector<uint32_t>& v);
    // Copy a value read from another file verbatim (any type, arrays included).
    void copy_value(const std::string& key, const Value& v);
    // Setting an existing key replaces its value in place (order kept).
    bool has(const std::string& key) const;
    void remove(const std::string& key);

    // Declare a tensor; `data` must stay valid until write() returns and hold
    // row_size(type, ne[0]) * rows bytes. Dimensions beyond n_dims are 1.
    void add_tensor(const std::string& name, TensorType type, std::vector<int64_t> ne,
                    const void* data);
    void set_alignment(
        uint64_t alignment);  // default 32; also written as general.alignment if != 32

    // Write to `path` via a temporary file, fsync and rename. Throws Error.
    void write(const std::string& path) const;
    // Serialize to memory (tests).
    std::vector<uint8_t> to_bytes() const;

  private:
    struct Entry {
        std::string key;
        std::vector<uint8_t> encoded;  // type tag + value
    };
    struct PendingTensor {
        std::string name;
        TensorType type;
        std::vector<int64_t> ne;
        const void* data;
    };
    void put(const std::string& key, std::vector<uint8_t> encoded);
    // Streams the serialized file through `sink` (shared by write() and to_bytes()).
    void write_to(const std::function<void(const void*, size_t)>& sink) const;
    std::vector<Entry> entries_;
    std::vector<PendingTensor> tensors_;
    uint64_t alignment_ = 32;
};

}  // namespace lokal::gguf
