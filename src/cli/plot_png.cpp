#include "cli/plot_png.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "cli/common.h"

namespace lokal::cli {
namespace {

// ---- PNG container ----

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
    static uint32_t table[256];
    static bool init = false;
    if (!init) {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        init = true;
    }
    crc = ~crc;
    for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
    for (int s = 24; s >= 0; s -= 8) v.push_back((uint8_t)(x >> s));
}

void chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
    put_be32(out, (uint32_t)data.size());
    const size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data.begin(), data.end());
    put_be32(out, crc32(out.data() + start, out.size() - start));
}

// ---- deflate: one fixed-Huffman block; literals, and runs coded as matches at distance 1 ----

struct BitWriter {
    std::vector<uint8_t>& out;
    uint32_t acc = 0;
    int n = 0;
    void bits(uint32_t v, int count) {  // LSB first
        for (int i = 0; i < count; ++i) {
            acc |= ((v >> i) & 1u) << n;
            if (++n == 8) out.push_back((uint8_t)acc), acc = 0, n = 0;
        }
    }
    void huff(uint32_t code, int len) {  // Huffman codes go MSB first
        for (int i = len - 1; i >= 0; --i) bits((code >> i) & 1u, 1);
    }
    void flush() {
        if (n) out.push_back((uint8_t)acc), acc = 0, n = 0;
    }
};

void fixed_symbol(BitWriter& w, int sym) {
    if (sym < 144)
        w.huff(0x30 + sym, 8);
    else if (sym < 256)
        w.huff(0x190 + sym - 144, 9);
    else if (sym < 280)
        w.huff(sym - 256, 7);
    else
        w.huff(0xC0 + sym - 280, 8);
}

void fixed_length(BitWriter& w, int len) {  // 3..258
    static const int base[] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                               31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int extra[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    int i = 28;
    while (base[i] > len) --i;
    fixed_symbol(w, 257 + i);
    w.bits((uint32_t)(len - base[i]), extra[i]);
    w.huff(0, 5);  // distance code 0: distance 1
}

std::vector<uint8_t> zlib_compress(const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out = {0x78, 0x01};
    BitWriter w{out};
    w.bits(1, 1);  // final block
    w.bits(1, 2);  // fixed Huffman
    size_t i = 0;
    while (i < data.size()) {
        size_t run = 0;
        if (i > 0)
            while (run < 258 && i + run < data.size() && data[i + run] == data[i - 1]) ++run;
        if (run >= 3) {
            fixed_length(w, (int)run);
            i += run;
        } else {
            fixed_symbol(w, data[i++]);
        }
    }
    fixed_symbol(w, 256);
    w.flush();
    uint32_t a = 1, b = 0;
    for (uint8_t c : data) a = (a + c) % 65521, b = (b + a) % 65521;
    put_be32(out, (b << 16) | a);
    return out;
}

// ---- canvas and font ----

enum Color : uint8_t { kWhite, kBlack, kGrid, kLine, kText, kMarker };
const std::vector<uint32_t> kPalette = {0xFFFFFF, 0x000000, 0xE0E0E0, 0x4F81BD, 0x404040, 0xC0504D};

// 3x5 glyphs, rows top to bottom, '#' set.
const char* glyph(char c) {
    static const struct {
        char c;
        const char* rows;
    } font[] = {
        {'0', "####.##.##.####"}, {'1', ".#.##..#..#.###"}, {'2', "###..#####..###"},
        {'3', "###..####..####"}, {'4', "#.##.####..#..#"}, {'5', "####..###..####"},
        {'6', "####..####.####"}, {'7', "###..#..#..#..#"}, {'8', "####.#####.####"},
        {'9', "####.####..####"}, {'A', ".#.#.#####.##.#"}, {'B', "##.#.###.#.###."},
        {'C', ".###..#..#...##"}, {'D', "##.#.##.##.###."}, {'E', "####..##.#..###"},
        {'F', "####..##.#..#.."}, {'G', ".###..#.##.#.##"}, {'H', "#.##.#####.##.#"},
        {'I', "###.#..#..#.###"}, {'J', "..#..#..##.#.#."}, {'K', "#.##.###.#.##.#"},
        {'L', "#..#..#..#..###"}, {'M', "#.########.##.#"}, {'N', "##.#.##.##.##.#"},
        {'O', ".#.#.##.##.#.#."}, {'P', "##.#.###.#..#.."}, {'Q', ".#.#.##.###..##"},
        {'R', "##.#.###.#.##.#"}, {'S', ".###...#...###."}, {'T', "###.#..#..#..#."},
        {'U', "#.##.##.##.####"}, {'V', "#.##.##.##.#.#."}, {'W', "#.##.########.#"},
        {'X', "#.##.#.#.#.##.#"}, {'Y', "#.##.#.#..#..#."}, {'Z', "###..#.#.#..###"},
        {'.', ".............#."}, {'-', "......###......"}, {'_', "............###"},
        {'%', "#....#.#.#....#"}, {'(', ".#.#..#..#...#."}, {')', ".#...#..#..#.#."},
        {'/', "..#..#.#.#..#.."}, {'+', "....#.###.#...."}, {':', "....#.....#...."},
        {',', "..........#.#.."}, {'=', "...###...###..."},
    };
    const char u = (char)std::toupper((unsigned char)c);
    for (const auto& g : font)
        if (g.c == u && std::strlen(g.rows) == 15) return g.rows;
    return nullptr;
}

struct Canvas {
    int w, h;
    std::vector<uint8_t> px;
    Canvas(int width, int height) : w(width), h(height), px((size_t)width * height, kWhite) {}
    void set(int x, int y, uint8_t c) {
        if (x >= 0 && y >= 0 && x < w && y < h) px[(size_t)y * w + x] = c;
    }
    void rect(int x0, int y0, int x1, int y1, uint8_t c) {
        for (int y = y0; y <= y1; ++y)
            for (int x = x0; x <= x1; ++x) set(x, y, c);
    }
    void line(int x0, int y0, int x1, int y1, uint8_t c, int thick = 1) {
        const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
        const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
        int err = dx + dy;
        for (;;) {
            rect(x0, y0, x0 + thick - 1, y0 + thick - 1, c);
            if (x0 == x1 && y0 == y1) break;
            const int e2 = 2 * err;
            if (e2 >= dy) err += dy, x0 += sx;
            if (e2 <= dx) err += dx, y0 += sy;
        }
    }
    void disc(int cx, int cy, int r, uint8_t c) {
        for (int y = -r; y <= r; ++y)
            for (int x = -r; x <= r; ++x)
                if (x * x + y * y <= r * r) set(cx + x, cy + y, c);
    }
    // Text at (x, y) top-left, 2x scaled glyphs: 8 px per character, 10 px high.
    void text(int x, int y, const std::string& s, uint8_t c) {
        for (char ch : s) {
            if (const char* g = glyph(ch))
                for (int r = 0; r < 5; ++r)
                    for (int k = 0; k < 3; ++k)
                        if (g[r * 3 + k] == '#')
                            rect(x + 2 * k, y + 2 * r, x + 2 * k + 1, y + 2 * r + 1, c);
            x += 8;
        }
    }
    static int text_width(const std::string& s) { return (int)s.size() * 8 - 2; }
};

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

}  // namespace

std::vector<uint8_t> encode_png(int width, int height, const std::vector<uint8_t>& pixels,
                                const std::vector<uint32_t>& palette_rgb) {
    std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    std::vector<uint8_t> ihdr;
    put_be32(ihdr, (uint32_t)width);
    put_be32(ihdr, (uint32_t)height);
    ihdr.insert(ihdr.end(), {8, 3, 0, 0, 0});  // 8-bit palette indices, no interlace
    chunk(out, "IHDR", ihdr);
    std::vector<uint8_t> plte;
    for (uint32_t c : palette_rgb)
        plte.insert(plte.end(), {(uint8_t)(c >> 16), (uint8_t)(c >> 8), (uint8_t)c});
    chunk(out, "PLTE", plte);
    std::vector<uint8_t> raw;
    raw.reserve((size_t)(width + 1) * height);
    for (int y = 0; y < height; ++y) {
        raw.push_back(0);  // filter: none
        raw.insert(raw.end(), pixels.begin() + (ptrdiff_t)y * width,
                   pixels.begin() + (ptrdiff_t)(y + 1) * width);
    }
    chunk(out, "IDAT", zlib_compress(raw));
    chunk(out, "IEND", {});
    return out;
}

void write_plot_png(const PlotSpec& spec, const std::string& path) {
    Canvas cv(spec.width, spec.height);
    const int left = 80, right = spec.width - 30, top = 50, bottom = spec.height - 60;
    std::vector<PlotPoint> pts;
    for (const PlotPoint& p : spec.points)
        if (std::isfinite(p.x) && std::isfinite(p.y) && (!spec.log_y || p.y > 0)) pts.push_back(p);
    std::sort(pts.begin(), pts.end(),
              [](const PlotPoint& a, const PlotPoint& b) { return a.x < b.x; });

    double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (!pts.empty()) {
        x0 = std::floor(pts.front().x), x1 = std::ceil(pts.back().x);
        if (x1 <= x0) x1 = x0 + 1;
        auto ty = [&](double y) { return spec.log_y ? std::log10(y) : y; };
        y0 = y1 = ty(pts[0].y);
        for (const PlotPoint& p : pts) y0 = std::min(y0, ty(p.y)), y1 = std::max(y1, ty(p.y));
        if (spec.log_y) {
            y0 = std::floor(y0 - 0.2), y1 = std::ceil(y1 + 0.2);  // room for labels above the top point
        } else {
            const double pad = (y1 - y0) * 0.1 + 1e-12;
            y0 -= pad, y1 += pad;
        }
        if (y1 <= y0) y1 = y0 + 1;
    }
    auto X = [&](double x) {
        return left + (int)std::lround((x - x0) / (x1 - x0) * (right - left));
    };
    auto Y = [&](double y) {
        const double t = spec.log_y ? std::log10(y) : y;
        return bottom - (int)std::lround((t - y0) / (y1 - y0) * (bottom - top));
    };

    // Grid and tick labels.
    const int xstep = x1 - x0 > 12 ? 2 : 1;
    for (double x = x0; x <= x1 + 1e-9; x += xstep) {
        cv.line(X(x), top, X(x), bottom, kGrid);
        const std::string s = fmt("%g", x);
        cv.text(X(x) - Canvas::text_width(s) / 2, bottom + 8, s, kText);
    }
    if (spec.log_y) {
        for (double e = y0; e <= y1 + 1e-9; e += 1) {
            const int y = Y(std::pow(10.0, e));
            cv.line(left, y, right, y, kGrid);
            const std::string s = "1E" + fmt("%g", e);
            cv.text(left - 8 - Canvas::text_width(s), y - 5, s, kText);
        }
    } else {
        for (int k = 0; k <= 5; ++k) {
            const double v = y0 + (y1 - y0) * k / 5;
            const int y = Y(v);
            cv.line(left, y, right, y, kGrid);
            const std::string s = fmt("%.3g", v);
            cv.text(left - 8 - Canvas::text_width(s), y - 5, s, kText);
        }
    }
    cv.line(left, top, left, bottom, kBlack);
    cv.line(left, bottom, right, bottom, kBlack);
    cv.text(left, 14, spec.title, kBlack);
    cv.text(left, 32, spec.y_label, kText);
    cv.text((left + right - Canvas::text_width(spec.x_label)) / 2, bottom + 28, spec.x_label,
            kText);

    for (size_t i = 1; i < pts.size(); ++i)
        cv.line(X(pts[i - 1].x), Y(pts[i - 1].y), X(pts[i].x), Y(pts[i].y), kLine, 2);
    for (const PlotPoint& p : pts) cv.disc(X(p.x), Y(p.y), 4, kMarker);
    // Labels go to the first of four spots around their marker that overlaps no label
    // already placed; a label with no free spot is left out (the CSV has every row).
    struct Box {
        int x0, y0, x1, y1;
    };
    std::vector<Box> placed;
    for (const PlotPoint& p : pts) {
        const int x = X(p.x), y = Y(p.y), tw = Canvas::text_width(p.label);
        const Box spots[] = {{x + 7, y - 14, x + 7 + tw, y - 4},
                             {x - 7 - tw, y + 4, x - 7, y + 14},
                             {x + 7, y + 4, x + 7 + tw, y + 14},
                             {x - 7 - tw, y - 14, x - 7, y - 4}};
        for (const Box& b : spots) {
            bool free = b.x0 > left + 2 && b.x1 < cv.w && b.y0 > top && b.y1 < bottom;
            for (const Box& o : placed)
                free = free &&
                       (b.x1 + 2 < o.x0 || o.x1 + 2 < b.x0 || b.y1 + 1 < o.y0 || o.y1 + 1 < b.y0);
            if (!free) continue;
            cv.text(b.x0, b.y0, p.label, kBlack);
            placed.push_back(b);
            break;
        }
    }

    const std::vector<uint8_t> png = encode_png(cv.w, cv.h, cv.px, kPalette);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f.write(reinterpret_cast<const char*>(png.data()), (std::streamsize)png.size()))
        throw UsageError("cannot write '" + path + "'");
}

}  // namespace lokal::cli
