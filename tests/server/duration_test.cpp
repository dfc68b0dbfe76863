// Ollama-style keep_alive durations: what clients send, and hostile text (found by the HTTP
// fuzzer: "-1e308" seconds overflowed a float-to-integer conversion, "." threw out of stod).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>

#include "server/models.h"

namespace lokal::server {
namespace {

using std::chrono::milliseconds;

TEST(Duration, OllamaForms) {
    EXPECT_EQ(parse_duration("5m"), milliseconds(300000));
    EXPECT_EQ(parse_duration("1h30m"), milliseconds(5400000));
    EXPECT_EQ(parse_duration("10s"), milliseconds(10000));
    EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
    EXPECT_EQ(parse_duration("1.5s"), milliseconds(1500));
    EXPECT_EQ(parse_duration("30"), milliseconds(30000));  // a bare number is seconds
    EXPECT_EQ(parse_duration("-1"), milliseconds(-1000));  // negative: keep forever
    EXPECT_EQ(parse_duration("0"), milliseconds(0));
    EXPECT_EQ(parse_duration("-5m"), milliseconds(-300000));
}

TEST(Duration, MalformedIsNulloptNeverAThrow) {
    for (const char* s : {"", ".", "-", "--5m", "5x", "m", "1.2.3s", "5m-", " 5", "abc", "5 m",
                          "nan", "1e"})
        EXPECT_FALSE(parse_duration(s).has_value()) << '"' << s << '"';
}

TEST(Duration, HugeValuesClampToAHundredYears) {
    const milliseconds century((int64_t)(100 * 365.25 * 24 * 3600e3));
    EXPECT_EQ(parse_duration("1e999"), century);  // strtod: +inf
    EXPECT_EQ(parse_duration("-1e308"), -century);
    EXPECT_EQ(parse_duration("99999999999999999999h"), century);
    EXPECT_EQ(duration_of_ms(1e300), century);
    EXPECT_EQ(duration_of_ms(-INFINITY), -century);
    EXPECT_FALSE(duration_of_ms(NAN).has_value());
}

}  // namespace
}  // namespace lokal::server
