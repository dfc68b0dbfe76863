#include "store/name.h"

#include <string>

#include "store/util.h"

namespace lokal::store {

namespace {

bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    return out;
}

// First char from `first`, the rest alnum or one of `extra`, length 1..max.
// Returns an empty string when valid, else why not.
std::string check_part(std::string_view s, const char* what, size_t max, bool first_underscore,
                       std::string_view extra) {
    if (s.empty()) return std::string(what) + " is empty";
    if (s.size() > max)
        return std::string(what) + " is longer than " + std::to_string(max) + " characters";
    if (!(is_alnum(s[0]) || (first_underscore && s[0] == '_')))
        return std::string(what) + " must start with a letter or digit";
    for (char c : s)
        if (!is_alnum(c) && extra.find(c) == std::string_view::npos)
            return std::string(what) + " has an invalid character " + show_str(std::string(1, c));
    return {};
}

std::string check_host(std::string_view host) {
    std::string_view h = host, port;
    if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
        h = host.substr(0, colon);
        port = host.substr(colon + 1);
        if (port.empty() || port.size() > 5) return "host has an invalid port";
        for (char c : port)
            if (c < '0' || c > '9') return "host has an invalid port";
        if (std::stoul(std::string(port)) > 65535) return "host has an invalid port";
    }
    if (auto why = check_part(h, "host", 253, false, ".-"); !why.empty()) return why;
    if (h.find("..") != std::string_view::npos) return "host has an empty label";
    return {};
}

}  // namespace

std::string ModelName::full() const {
    return host + "/" + ns + "/" + model + ":" + tag;
}

std::string ModelName::display() const {
    std::string out;
    if (host != kDefaultHost)
        out = host + "/" + ns + "/";
    else if (ns != kDefaultNamespace)
        out = ns + "/";
    return out + model + ":" + tag;
}

std::string ModelName::manifest_rel() const {
    return host + "/" + ns + "/" + model + "/" + tag;
}

ModelName parse_name(std::string_view s) {
    auto fail = [&](const std::string& why) -> ModelName {
        throw Error("invalid model name " + show_str(s) + ": " + why);
    };
    if (s.empty()) return fail("empty");
    if (s.size() > 512) return fail("too long");
    ModelName n;
    std::string_view rest = s;
    // The tag follows the last ':' after the last '/'.
    size_t slash = rest.rfind('/');
    size_t colon = rest.rfind(':');
    if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
        n.tag = std::string(rest.substr(colon + 1));
        rest = rest.substr(0, colon);
        if (auto why = check_part(n.tag, "tag", 80, true, "._-"); !why.empty()) return fail(why);
    }
    // Split the repository part on '/'.
    std::string_view parts[4];
    int count = 0;
    for (size_t start = 0;;) {
        size_t p = rest.find('/', start);
        if (count == 3) return fail("too many '/' separated parts");
        parts[count++] = rest.substr(start, p == std::string_view::npos ? p : p - start);
        if (p == std::string_view::npos) break;
        start = p + 1;
    }
    std::string_view host, ns, model;
    if (count == 1) {
        model = parts[0];
    } else if (count == 2) {
        // Docker's rule: a first part with '.' or ':' or "localhost" is a registry host.
        std::string_view first = parts[0];
        if (first.find('.') != std::string_view::npos ||
            first.find(':') != std::string_view::npos || first == "localhost")
            host = first;
        else
            ns = first;
        model = parts[1];
    } else {
        host = parts[0];
        ns = parts[1];
        model = parts[2];
    }
    const bool has_host = count == 3 || (count == 2 && !host.empty());
    const bool has_ns = count == 3 || (count == 2 && host.empty());
    if (has_host) {
        if (auto why = check_host(host); !why.empty()) return fail(why);
        n.host = lower(host);
    }
    if (has_ns) {
        if (auto why = check_part(ns, "namespace", 80, false, "_-"); !why.empty()) return fail(why);
        n.ns = lower(ns);
    }
    if (auto why = check_part(model, "model", 80, false, "._-"); !why.empty()) return fail(why);
    n.model = lower(model);
    return n;
}

std::optional<ModelName> try_parse_name(std::string_view s) {
    try {
        return parse_name(s);
    } catch (const Error&) {
        return std::nullopt;
    }
}

}  // namespace lokal::store
