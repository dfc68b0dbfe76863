// This machine's memory read bandwidth: the roofline that single-sequence generation is
// measured against (decoding one token reads every weight once).
#pragma once

#include <cstddef>
#include <string>

namespace lokal::cli {

// A buffer several times the last-level cache (at least 1 GiB), capped by physical memory,
// so the reads come from DRAM and not from cache.
size_t default_bandwidth_buffer_bytes();

// Read bandwidth with `threads` threads reading disjoint slices of a `bytes` buffer (wide
// SIMD loads where the CPU has them), each slice as 1, 2 and 4 streams at once, each with and
// without one software request per page ahead: the best of `passes` rounds of each.
struct ReadBandwidth {
    double bytes_per_s = 0;
    int streams_per_thread = 1;  // of the best pass
    bool page_requests = false;  // of the best pass
};
ReadBandwidth measure_read_bandwidth(int threads, size_t bytes, int passes = 5);

// Peak resident set (VmHWM) in bytes, 0 when unknown; reset_peak_rss asks the kernel to
// restart it from the current RSS and says whether that worked.
size_t peak_rss_bytes();
bool reset_peak_rss();

// Bytes of this process on transparent huge pages (AnonHugePages), and the system's THP
// mode ("always", "madvise", "never"; "unknown" when unreadable). lokal advises huge pages
// for its repacked weights and KV cache (ops/huge_pages.h); with "never" decode is slower.
size_t huge_page_bytes();
std::string transparent_huge_pages_mode();

// "model name" of /proc/cpuinfo, or "unknown".
std::string cpu_model_name();

}  // namespace lokal::cli
