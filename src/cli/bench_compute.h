// This machine's arithmetic peaks: the ceiling that prompt processing and batched generation
// are measured against, as the read bandwidth is for single-sequence generation
// (bench_memory.h). Each peak is the rate of the one instruction a kernel path's inner loops
// are built on, issued back to back on independent registers by every thread at once; the
// kernels need other instructions besides (unpacking, scales, the float chain), so they reach
// a fraction of it.
#pragma once

#include <string>

namespace lokal::cli {

struct ComputePeaks {
    std::string isa;         // the kernel path measured ("avx512", "avx2"); empty: none
    int threads = 0;         // threads issuing at once
    double int8_macs = 0;    // multiply-adds per second, u8 x s8 into int32/int16
    std::string int8_instr;  // "vpdpbusd zmm" (64 per instruction), "vpmaddubsw ymm" (32)
    double f32_macs = 0;     // fused multiply-adds per second (f32 and f16 weights)
    std::string f32_instr;   // "vfmadd231ps zmm" (16), "vfmadd231ps ymm" (8)
    double bf16_macs = 0;    // vdpbf16ps zmm (32 per instruction); 0 without the instruction
};

// Peaks of the path `isa` (as kernels().isa names it; "amx" measures its AVX-512 VNNI part,
// the tile unit is not measured) with `threads` threads: the best of `passes` rounds. A path
// this CPU cannot run, or "scalar"/"reference", gives zeros (isa empty).
constexpr int kComputePasses = 5;
ComputePeaks measure_compute_peaks(const std::string& isa, int threads, bool bf16_dot,
                                   int passes = kComputePasses);

}  // namespace lokal::cli
