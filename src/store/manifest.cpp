#include "store/manifest.h"

#include <nlohmann/json.hpp>

namespace lokal::store {

using json = nlohmann::json;

namespace {

bool known_layer_type(std::string_view t) {
    for (const char* k : {media::kModel, media::kAdapter, media::kProjector, media::kTemplate,
                          media::kSystem, media::kParams, media::kLicense, media::kMessages})
        if (t == k) return true;
    return false;
}

Layer parse_layer(const json& j, const std::string& where, bool is_config) {
    if (!j.is_object()) throw Error("invalid manifest: " + where + " is not an object");
    auto mt = j.find("mediaType");
    if (mt == j.end() || !mt->is_string())
        throw Error("invalid manifest: " + where + " has no mediaType");
    Layer l;
    l.media_type = mt->get<std::string>();
    if (is_config) {
        if (l.media_type != media::kConfig && l.media_type != media::kConfigOci)
            throw Error("invalid manifest: unknown config media type " + show_str(l.media_type));
    } else if (!known_layer_type(l.media_type)) {
        throw Error("invalid manifest: unknown media type " + show_str(l.media_type) + " in " +
                    where);
    }
    auto dg = j.find("digest");
    if (dg == j.end() || !dg->is_string())
        throw Error("invalid manifest: " + where + " has no digest");
    try {
        l.digest = parse_digest(dg->get_ref<const std::string&>());
    } catch (const Error& e) {
        throw Error(std::string("invalid manifest: ") + e.what());
    }
    auto sz = j.find("size");
    if (sz == j.end() || !sz->is_number_integer())
        throw Error("invalid manifest: " + where + " has no integer size");
    if (sz->is_number_unsigned()) {
        l.size = sz->get<uint64_t>();
    } else {
        int64_t v = sz->get<int64_t>();
        if (v < 0) throw Error("invalid manifest: " + where + " has a negative size");
        l.size = (uint64_t)v;
    }
    uint64_t cap = (l.media_type == media::kModel || l.media_type == media::kAdapter ||
                    l.media_type == media::kProjector)
                       ? kMaxBlobBytes
                       : kMaxSmallLayerBytes;
    if (l.size > cap)
        throw Error("invalid manifest: " + where + " size " + std::to_string(l.size) +
                    " exceeds the limit of " + std::to_string(cap) + " bytes");
    return l;
}

}  // namespace

Manifest Manifest::parse(std::string_view text) {
    if (text.size() > kMaxManifestBytes)
        throw Error("invalid manifest: larger than " + std::to_string(kMaxManifestBytes) +
                    " bytes");
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error("invalid manifest: not a JSON object");
    auto sv = j.find("schemaVersion");
    if (sv == j.end() || !sv->is_number_integer() || sv->get<int64_t>() != 2)
        throw Error("invalid manifest: schemaVersion must be 2");
    Manifest m;
    if (auto mt = j.find("mediaType"); mt != j.end()) {
        if (!mt->is_string()) throw Error("invalid manifest: mediaType is not a string");
        m.media_type = mt->get<std::string>();
        if (m.media_type != media::kManifestV2 && m.media_type != media::kManifestOci)
            throw Error("invalid manifest: unsupported manifest media type " +
                        show_str(m.media_type));
    } else {
        m.media_type = media::kManifestOci;  // OCI allows it to be absent
    }
    auto cfg = j.find("config");
    if (cfg == j.end()) throw Error("invalid manifest: no config");
    m.config = parse_layer(*cfg, "config", true);
    auto layers = j.find("layers");
    if (layers == j.end() || !layers->is_array()) throw Error("invalid manifest: no layers array");
    if (layers->size() > kMaxLayers)
        throw Error("invalid manifest: too many layers (" + std::to_string(layers->size()) + ")");
    int models = 0;
    for (size_t i = 0; i < layers->size(); ++i) {
        m.layers.push_back(parse_layer((*layers)[i], "layer " + std::to_string(i), false));
        if (m.layers.back().media_type == media::kModel) ++models;
    }
    if (models != 1)
        throw Error("invalid manifest: expected exactly one model layer, found " +
                    std::to_string(models));
    return m;
}

std::string Manifest::to_json() const {
    auto layer = [](const Layer& l) {
        json o = json::object();
        o["mediaType"] = l.media_type;
        o["digest"] = l.digest.str();
        o["size"] = l.size;
        return o;
    };
    json j = json::object();
    j["schemaVersion"] = 2;
    j["mediaType"] = media_type;
    j["config"] = layer(config);
    j["layers"] = json::array();
    for (const auto& l : layers) j["layers"].push_back(layer(l));
    return j.dump();
}

const Layer* Manifest::find(std::string_view t) const {
    for (const auto& l : layers)
        if (l.media_type == t) return &l;
    return nullptr;
}

std::vector<const Layer*> Manifest::find_all(std::string_view t) const {
    std::vector<const Layer*> out;
    for (const auto& l : layers)
        if (l.media_type == t) out.push_back(&l);
    return out;
}

const Layer& Manifest::model() const {
    const Layer* l = find(media::kModel);
    if (!l) throw Error("manifest has no model layer");
    return *l;
}

uint64_t Manifest::total_size() const {
    uint64_t s = config.size;
    for (const auto& l : layers) s += l.size;
    return s;
}

}  // namespace lokal::store
