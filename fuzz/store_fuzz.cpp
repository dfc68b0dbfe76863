// libFuzzer target for the model store's parsers of untrusted input: registry manifests
// (from the network), Modelfiles and their PARAMETER values (from users and /api/create),
// model names and blob digests (from everywhere), and safetensors headers (`lokal convert`
// of downloaded checkpoints). The first byte picks the parser, the rest is its input.
// store::Error is the accepted outcome of bad input; a crash, a sanitizer report, a hang, a
// huge allocation or any other exception type is a bug.
//
//   libFuzzer (clang): fuzz/build_libfuzzer.sh, then
//                      build-fuzz/bin/store_fuzz -max_len=4096 /tmp/corpus tests/store/malformed
//   other builds:      store_fuzz_smoke FILE_OR_DIR... [--mutate SECONDS]
//                      (fuzz/standalone_main.h; the store_fuzz_smoke test)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "store/convert.h"
#include "store/manifest.h"
#include "store/modelfile.h"
#include "store/name.h"
#include "store/util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1 || size > 1 << 20) return 0;
    const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    using namespace lokal::store;
    try {
        switch (data[0] % 5) {
            case 0: {
                const Manifest m = Manifest::parse(in);
                (void)m.model();  // parse() promises exactly one model layer
                break;
            }
            case 1: {
                const Modelfile mf = parse_modelfile(in);
                (void)parameters_to_json(mf.parameters);
                break;
            }
            case 2: {
                if (auto n = try_parse_name(in)) {
                    // What a valid name prints must parse back to the same name.
                    if (parse_name(n->full()).full() != n->full()) std::abort();
                }
                break;
            }
            case 3: {
                if (auto d = try_parse_digest(in, true))
                    if (parse_digest(d->str()).str() != d->str()) std::abort();
                break;
            }
            default: {
                // A copy, so the tensors point into memory this call owns.
                const std::vector<uint8_t> bytes(in.begin(), in.end());
                const SafeTensors st = SafeTensors::from_memory(bytes.data(), bytes.size(), "fuzz");
                std::vector<float> out;
                for (const auto& t : st.tensors()) {
                    if (t.dtype != "F32" && t.dtype != "F16" && t.dtype != "BF16") continue;
                    out.resize((size_t)t.n_elements());
                    SafeTensors::to_f32(t, out.data());
                }
            }
        }
    } catch (const Error&) {
    }
    return 0;
}

#ifdef LOKAL_FUZZ_STANDALONE
#include "standalone_main.h"
#endif
