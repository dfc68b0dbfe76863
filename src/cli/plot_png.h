// A small scatter/line plot written as a PNG, with no image library: an 8-bit palette
// canvas, a built-in 3x5 pixel font, and a PNG encoder (zlib with fixed-Huffman deflate
// that codes runs of equal bytes, CRC-32, Adler-32). Plots are mostly background, so runs
// keep the files a few kilobytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lokal::cli {

struct PlotPoint {
    double x = 0, y = 0;
    std::string label;
};

struct PlotSpec {
    std::string title, x_label, y_label;
    bool log_y = false;
    int width = 720, height = 450;
    std::vector<PlotPoint> points;  // drawn as markers, joined in increasing x
};

// Encode indexed pixels (one byte each, row-major) with an RGB palette as PNG bytes.
std::vector<uint8_t> encode_png(int width, int height, const std::vector<uint8_t>& pixels,
                                const std::vector<uint32_t>& palette_rgb);

// Render the plot and write it to `path`. Throws UsageError when the file cannot be written.
void write_plot_png(const PlotSpec& spec, const std::string& path);

}  // namespace lokal::cli
