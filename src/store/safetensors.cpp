// The safetensors reader: mmap, then a bounded, validated JSON header.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "quant/fp16.h"
#include "store/convert.h"
#include "store/util.h"

namespace lokal::store {

using json = nlohmann::json;

namespace {
constexpr uint64_t kMaxHeader = 100ull << 20;
constexpr int kMaxDims = 8;

size_t dtype_size(const std::string& t) {
    if (t == "F32") return 4;
    if (t == "F16" || t == "BF16") return 2;
    return 0;
}
}  // namespace

SafeTensors::SafeTensors(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error("cannot open " + path + ": " + strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file");
    }
    size_ = (size_t)st.st_size;
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            ::close(fd);
            throw Error("cannot map " + path + ": " + strerror(e));
        }
        base_ = static_cast<const uint8_t*>(p);
        mapped_ = true;
    }
    ::close(fd);
    try {
        parse(path);
    } catch (...) {
        if (mapped_) ::munmap(const_cast<uint8_t*>(base_), size_);
        mapped_ = false;
        throw;
    }
}

SafeTensors SafeTensors::from_memory(const uint8_t* data, size_t size, std::string label) {
    SafeTensors s;
    s.base_ = data;
    s.size_ = size;
    s.parse(label);
    return s;
}

SafeTensors::SafeTensors(SafeTensors&& o) noexcept
    : base_(o.base_), size_(o.size_), mapped_(o.mapped_), tensors_(std::move(o.tensors_)) {
    o.mapped_ = false;
    o.base_ = nullptr;
}

SafeTensors::~SafeTensors() {
    if (mapped_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

void SafeTensors::parse(const std::string& label) {
    auto fail = [&](const std::string& why) { throw Error(label + ": " + why); };
    if (size_ < 8) fail("too small for a safetensors file");
    uint64_t n = 0;
    std::memcpy(&n, base_, 8);
    if (n > kMaxHeader) fail("header length " + std::to_string(n) + " exceeds the limit");
    if (n > size_ - 8)
        fail("header length " + std::to_string(n) + " runs past the end of the file");
    const char* h = reinterpret_cast<const char*>(base_ + 8);
    json j = json::parse(h, h + n, nullptr, false);
    if (j.is_discarded() || !j.is_object()) fail("header is not a JSON object");
    const uint64_t data_size = size_ - 8 - n;
    const uint8_t* data = base_ + 8 + n;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (auto& [name, v] : j.items()) {
        if (name == "__metadata__") continue;
        std::string tn = "tensor " + show_str(name);
        if (!v.is_object()) fail(tn + " is not an object");
        if (!v.contains("dtype") || !v["dtype"].is_string()) fail(tn + " has no dtype");
        Tensor t;
        t.name = name;
        t.dtype = v["dtype"].get<std::string>();
        size_t es = dtype_size(t.dtype);
        if (!es) fail(tn + " has unsupported dtype " + show_str(t.dtype));
        if (!v.contains("shape") || !v["shape"].is_array() || v["shape"].size() > kMaxDims)
            fail(tn + " has no valid shape");
        uint64_t numel = 1;
        for (const auto& d : v["shape"]) {
            if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40))
                fail(tn + " has an invalid dimension");
            uint64_t x = d.get<uint64_t>();
            if (x && numel > (1ull << 50) / x) fail(tn + " has too many elements");
            numel *= x;
            t.shape.push_back((int64_t)x);
        }
        const auto& off = v.contains("data_offsets") ? v["data_offsets"] : json();
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
            !off[1].is_number_unsigned())
            fail(tn + " has no valid data_offsets");
        uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
        if (b > e || e > data_size) fail(tn + " data_offsets are outside the file");
        if (e - b != numel * es)
            fail(tn + " byte size " + std::to_string(e - b) +
                 " does not match its shape and dtype");
        t.data = data + b;
        t.n_bytes = e - b;
        if (t.n_bytes) ranges.emplace_back(b, e);
        tensors_.push_back(std::move(t));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second) fail("tensors overlap");
}

const SafeTensors::Tensor* SafeTensors::find(std::string_view name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

void SafeTensors::to_f32(const Tensor& t, float* out) {
    const int64_t n = t.n_elements();
    if (n == 0) return;  // out may be null then (an empty vector's data()): no memcpy of it
    if (t.dtype == "F32") {
        std::memcpy(out, t.data, (size_t)n * 4);
    } else {
        bool bf = t.dtype == "BF16";
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            out[i] = bf ? bf16_to_fp32(h) : fp16_to_fp32(h);
        }
    }
}

}  // namespace lokal::store
