// What the processor can run, detected once with cpuid/xgetbv.
//
// A feature counts only when both the CPU reports it and the OS saves the register state it
// needs (XCR0: YMM for AVX, ZMM/opmask for AVX-512, tile config/data for AMX, the latter also
// granted to this process through arch_prctl on Linux). The kernel tables in kernels.cpp
// pick their path from this.
#pragma once

#include <cstdint>
#include <string>

namespace lokal {

struct CpuFeatures {
    bool avx2 = false;
    bool fma = false;
    bool f16c = false;
    bool bmi2 = false;
    bool avx512f = false;
    bool avx512bw = false;
    bool avx512dq = false;
    bool avx512vl = false;
    bool avx512vnni = false;
    bool avx512bf16 = false;
    bool avx_vnni = false;
    bool amx_tile = false;  // includes the OS granting tile state to this process
    bool amx_int8 = false;
    bool amx_bf16 = false;

    // The level every AVX2 kernel needs.
    bool has_avx2_path() const { return avx2 && fma && f16c && bmi2; }
    // The level every AVX-512 kernel needs (Ice Lake / Zen 4 and newer).
    bool has_avx512_path() const {
        return has_avx2_path() && avx512f && avx512bw && avx512dq && avx512vl && avx512vnni;
    }

    // "avx2 fma f16c ... amx_int8" for `lokal info`.
    std::string describe() const;
};

// Detected on first call (thread-safe).
const CpuFeatures& cpu_features();

// This machine's physical memory in bytes; 0 when the system does not say.
uint64_t physical_memory_bytes();

}  // namespace lokal
