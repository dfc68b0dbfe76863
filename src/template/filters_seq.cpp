// Sequence filters of jinja2/filters.py. map/select/reject/selectattr/rejectattr/items/
// unique/batch/slice produce one-shot generators, as in jinja (tojson of one fails, a second
// iteration is empty).
#include <algorithm>
#include <unordered_set>

#include "template/builtins.h"
#include "template/filters_impl.h"
#include "template/unicode.h"

namespace lokal::tmpl {

namespace {

Value ignore_case(const Value& v) {
    return v.is_string() ? Value(uni::lower(v.s())) : v;
}

Value f_length(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "length", {});
    return Value(py_len(v));
}

Value f_first(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "first", {});
    if (v.is_generator()) {
        GenState& g = v.gen();
        if (!g.error.empty()) throw_type(g.error);
        if (g.pos < g.items.size()) return g.items[g.pos++];
    } else if (v.is_list()) {
        if (!v.arr().items.empty()) return v.arr().items.front();
    } else {
        std::vector<Value> items = iterate(v);
        if (!items.empty()) return items.front();
    }
    return Value::undefined("No first item, sequence was empty.");
}

Value f_last(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "last", {});
    if (v.is_generator()) throw_type("'generator' object is not reversible");
    if (v.is_namespace()) throw_type("'Namespace' object is not reversible");
    std::vector<Value> items = iterate(v);
    if (!items.empty()) return items.back();
    return Value::undefined("No last item, sequence was empty.");
}

Value f_list(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "list", {});
    return Value::list(iterate(v));
}

Value f_join(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "join", {"d", "attribute"});
    const std::string sep = r.has(0) ? to_str(*r.get(0)) : "";
    std::string out;
    bool first = true;
    for (const auto& item : iterate(v)) {
        if (!first) out += sep;
        first = false;
        out += to_str(r.has(1) ? get_path(item, *r.get(1)) : item);
        ctx.check_size(out.size());
    }
    return Value(std::move(out));
}

Value f_map(Context& ctx, const Value& v, CallArgs& a) {
    if (!truthy(v)) return Value::generator({}, "generator object sync_do_map");
    std::vector<Value> out;
    if (a.pos.empty() && a.kwarg("attribute")) {
        Value attribute, def;
        for (const auto& [k, x] : a.kw) {
            if (k == "attribute")
                attribute = x;
            else if (k == "default")
                def = x;
            else
                throw_type("Unexpected keyword argument '" + k + "'");
        }
        for (const auto& item : iterate(v)) {
            ctx.step();
            Value x = get_path(item, attribute);
            if (x.is_undefined() && !def.is_undefined() && !def.is_none()) x = def;
            out.push_back(std::move(x));
        }
    } else {
        if (a.pos.empty()) throw_type("map requires a filter argument");
        const std::string name = to_str(a.pos[0]);
        if (!find_filter(name)) {
            Value g = Value::generator({}, "generator object sync_do_map");
            g.gen().error = "No filter named '" + name + "'.";
            return g;
        }
        CallArgs rest;
        rest.pos.assign(a.pos.begin() + 1, a.pos.end());
        rest.kw = a.kw;
        for (const auto& item : iterate(v)) {
            ctx.step();
            CallArgs copy = rest;
            out.push_back(apply_filter(ctx, name, item, copy));
        }
    }
    return Value::generator(std::move(out), "generator object sync_do_map");
}

Value select_or_reject(Context& ctx, const Value& v, CallArgs& a, bool select, bool attr) {
    if (!truthy(v)) return Value::generator({}, "generator object select_or_reject");
    size_t off = 0;
    Value attribute;
    if (attr) {
        if (a.pos.empty()) throw_type("Missing parameter for attribute name");
        attribute = a.pos[0];
        off = 1;
    }
    const bool has_test = a.pos.size() > off;
    const std::string test = has_test ? to_str(a.pos[off]) : "";
    if (has_test && !find_test(test)) {
        Value g = Value::generator({}, "generator object select_or_reject");
        g.gen().error = "No test named '" + test + "'.";
        return g;
    }
    CallArgs rest;
    if (has_test)
        rest.pos.assign(a.pos.begin() + static_cast<std::ptrdiff_t>(off + 1), a.pos.end());
    rest.kw = a.kw;
    std::vector<Value> out;
    for (const auto& item : iterate(v)) {
        ctx.step();
        Value x = attr ? get_path(item, attribute) : item;
        bool ok;
        if (has_test) {
            CallArgs copy = rest;
            ok = apply_test(ctx, test, x, copy);
        } else {
            ok = truthy(x);
        }
        if (ok == select) out.push_back(item);
    }
    return Value::generator(std::move(out), "generator object select_or_reject");
}

Value f_select(Context& c, const Value& v, CallArgs& a) {
    return select_or_reject(c, v, a, true, false);
}
Value f_reject(Context& c, const Value& v, CallArgs& a) {
    return select_or_reject(c, v, a, false, false);
}
Value f_selectattr(Context& c, const Value& v, CallArgs& a) {
    return select_or_reject(c, v, a, true, true);
}
Value f_rejectattr(Context& c, const Value& v, CallArgs& a) {
    return select_or_reject(c, v, a, false, true);
}

Value f_items(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "items", {});
    if (v.is_undefined()) return Value::generator({}, "generator object do_items");
    if (!v.is_mapping()) {
        Value g = Value::generator({}, "generator object do_items");
        g.gen().error = "Can only get item pairs from a mapping.";
        return g;
    }
    std::vector<Value> out;
    for (const auto& [k, x] : v.dict().entries()) out.push_back(Value::tuple({k, x}));
    return Value::generator(std::move(out), "generator object do_items");
}

Value f_dictsort(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "dictsort", {"case_sensitive", "by", "reverse"});
    const bool cs = r.has(0) && truthy(*r.get(0));
    const std::string by = r.has(1) ? to_str(*r.get(1)) : "key";
    const bool rev = r.has(2) && truthy(*r.get(2));
    if (by != "key" && by != "value")
        throw_type("You can only sort by either \"key\" or \"value\"");
    if (v.is_undefined()) undefined_error(v);
    if (!v.is_mapping()) throw_type("'" + type_name(v) + "' object has no attribute 'items'");
    std::vector<Value> items;
    for (const auto& [k, x] : v.dict().entries()) items.push_back(Value::tuple({k, x}));
    const size_t pos = by == "key" ? 0 : 1;
    ctx.step(items.size());
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        Value kx = x.arr().items[pos], ky = y.arr().items[pos];
        if (!cs) {
            kx = ignore_case(kx);
            ky = ignore_case(ky);
        }
        return rev ? py_compare(ky, kx) < 0 : py_compare(kx, ky) < 0;
    });
    return Value::list(std::move(items));
}

// Sort key for sort/unique/min/max: one attribute path, or a comma-separated list of them.
Value sort_key(const Value& item, const Value& attribute, bool case_sensitive, bool multi) {
    if (multi && attribute.is_string() && attribute.s().find(',') != std::string::npos) {
        std::vector<Value> keys;
        const std::string& s = attribute.s();
        size_t start = 0;
        while (true) {
            size_t comma = s.find(',', start);
            Value k =
                get_path(item, Value(s.substr(start, comma == std::string::npos ? std::string::npos
                                                                                : comma - start)));
            keys.push_back(case_sensitive ? k : ignore_case(k));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        return Value::list(std::move(keys));
    }
    Value k = attribute.is_undefined() ? item : get_path(item, attribute);
    return case_sensitive ? k : ignore_case(k);
}

Value f_sort(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "sort", {"reverse", "case_sensitive", "attribute"});
    const bool rev = r.has(0) && truthy(*r.get(0));
    const bool cs = r.has(1) && truthy(*r.get(1));
    const Value attribute = r.get_or(2, Value());
    std::vector<Value> items = iterate(v);
    ctx.step(items.size());
    std::vector<std::pair<Value, Value>> keyed;
    keyed.reserve(items.size());
    for (auto& it : items) {
        Value k = sort_key(it, attribute.is_none() ? Value() : attribute, cs, true);
        if (!(k.is_list() && attribute.is_string() && attribute.s().find(',') != std::string::npos))
            k = Value::list({k});  // jinja's multi-attrgetter always yields a list
        keyed.emplace_back(std::move(k), it);
    }
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        return rev ? py_compare(y.first, x.first) < 0 : py_compare(x.first, y.first) < 0;
    });
    std::vector<Value> out;
    out.reserve(keyed.size());
    for (auto& kv : keyed) out.push_back(std::move(kv.second));
    return Value::list(std::move(out));
}

Value f_unique(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "unique", {"case_sensitive", "attribute"});
    const bool cs = r.has(0) && truthy(*r.get(0));
    const Value attribute = r.get_or(1, Value());
    std::unordered_set<std::string> seen;
    std::vector<Value> out;
    for (const auto& item : iterate(v)) {
        ctx.step();
        if (seen.insert(
                    hash_key(sort_key(item, attribute.is_none() ? Value() : attribute, cs, false)))
                .second)
            out.push_back(item);
    }
    return Value::generator(std::move(out), "generator object sync_do_unique");
}

Value f_reverse(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "reverse", {});
    if (v.is_string()) {
        auto cps = uni::to_cps(v.s());
        std::reverse(cps.begin(), cps.end());
        return Value(uni::from_cps(cps));
    }
    if (v.is_generator()) {
        std::vector<Value> items = iterate(v);
        std::reverse(items.begin(), items.end());
        return Value::list(std::move(items));
    }
    if (v.is_list() || v.is_mapping() || v.is_undefined()) {
        std::vector<Value> items = iterate(v);
        std::reverse(items.begin(), items.end());
        std::string kind =
            v.is_mapping() ? "dict_reversekeyiterator" : type_name(v) + "_reverseiterator";
        if (v.is_undefined()) kind = "reversed";
        return Value::generator(std::move(items), kind + " object");
    }
    throw_type("argument must be iterable");
}

Value f_sum(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "sum", {"attribute", "start"});
    Value total = r.get_or(1, Value(int64_t{0}));
    if (total.is_string()) throw_type("sum() can't sum strings [use ''.join(seq) instead]");
    for (const auto& item : iterate(v)) {
        ctx.step();
        total = binary_op(BinOp::Add, total,
                          r.has(0) && !r.get(0)->is_none() ? get_path(item, *r.get(0)) : item, ctx);
    }
    return total;
}

Value min_max(Context& ctx, const Value& v, CallArgs& a, bool is_max) {
    ArgReader r(a, is_max ? "max" : "min", {"case_sensitive", "attribute"});
    const bool cs = r.has(0) && truthy(*r.get(0));
    const Value attribute = r.get_or(1, Value());
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    ctx.step(items.size());
    size_t best = 0;
    Value best_key = sort_key(items[0], attribute.is_none() ? Value() : attribute, cs, false);
    for (size_t i = 1; i < items.size(); ++i) {
        Value k = sort_key(items[i], attribute.is_none() ? Value() : attribute, cs, false);
        const int c = py_compare(k, best_key);
        if (is_max ? c > 0 : c < 0) {
            best = i;
            best_key = std::move(k);
        }
    }
    return items[best];
}

Value f_min(Context& c, const Value& v, CallArgs& a) {
    return min_max(c, v, a, false);
}
Value f_max(Context& c, const Value& v, CallArgs& a) {
    return min_max(c, v, a, true);
}

Value f_batch(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "batch", {"linecount", "fill_with"});
    if (!r.has(0)) throw_type("batch() missing required argument 'linecount'");
    const int64_t n = int_param(r.get(0), "batch", 1);
    const Value* fill = r.get(1);
    std::vector<Value> out, tmp;
    for (const auto& item : iterate(v)) {
        ctx.step();
        if (static_cast<int64_t>(tmp.size()) == n) {
            out.push_back(Value::list(std::move(tmp)));
            tmp.clear();
        }
        tmp.push_back(item);
    }
    if (!tmp.empty()) {
        if (fill && !fill->is_none() && static_cast<int64_t>(tmp.size()) < n) {
            ctx.check_items(static_cast<size_t>(n));
            while (static_cast<int64_t>(tmp.size()) < n) tmp.push_back(*fill);
        }
        out.push_back(Value::list(std::move(tmp)));
    }
    return Value::generator(std::move(out), "generator object do_batch");
}

Value f_slice(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "slice", {"slices", "fill_with"});
    if (!r.has(0)) throw_type("slice() missing required argument 'slices'");
    const int64_t slices = int_param(r.get(0), "slice", 1);
    if (slices == 0) throw Error(ErrorKind::Runtime, "integer division or modulo by zero");
    const Value* fill = r.get(1);
    std::vector<Value> seq = iterate(v);
    const auto len = static_cast<int64_t>(seq.size());
    const int64_t per = len / slices, extra = len % slices;
    ctx.check_items(static_cast<size_t>(std::max<int64_t>(slices, 0)));
    std::vector<Value> out;
    int64_t offset = 0;
    for (int64_t s = 0; s < slices; ++s) {
        ctx.step();
        const int64_t start = offset + s * per;
        if (s < extra) ++offset;
        const int64_t end = offset + (s + 1) * per;
        std::vector<Value> tmp;
        for (int64_t i = std::max<int64_t>(start, 0); i < std::min(end, len); ++i)
            tmp.push_back(seq[static_cast<size_t>(i)]);
        if (fill && !fill->is_none() && s >= extra) tmp.push_back(*fill);
        out.push_back(Value::list(std::move(tmp)));
    }
    return Value::generator(std::move(out), "generator object sync_do_slice");
}

Value f_groupby(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "groupby", {"attribute", "default", "case_sensitive"});
    if (!r.has(0)) throw_type("groupby() missing required argument 'attribute'");
    const Value attribute = *r.get(0);
    const Value def = r.get_or(1, Value::none());
    const bool cs = r.has(2) && truthy(*r.get(2));
    auto key_of = [&](const Value& item, bool fold) {
        Value k = get_path(item, attribute);
        if (k.is_undefined() && !def.is_none()) k = def;
        return fold && !cs ? ignore_case(k) : k;
    };
    std::vector<std::pair<Value, Value>> keyed;
    for (const auto& item : iterate(v)) keyed.emplace_back(key_of(item, true), item);
    ctx.step(keyed.size());
    std::stable_sort(keyed.begin(), keyed.end(),
                     [](const auto& x, const auto& y) { return py_compare(x.first, y.first) < 0; });
    static const auto kFields = std::make_shared<const std::vector<std::string>>(
        std::vector<std::string>{"grouper", "list"});
    std::vector<Value> out;
    for (size_t i = 0; i < keyed.size();) {
        size_t j = i;
        std::vector<Value> group;
        while (j < keyed.size() && py_equal(keyed[j].first, keyed[i].first))
            group.push_back(keyed[j++].second);
        Value grouper = cs ? keyed[i].first : key_of(group.front(), false);
        Value t = Value::tuple({grouper, Value::list(std::move(group))});
        const_cast<Array&>(t.arr()).fields = kFields;
        out.push_back(std::move(t));
        i = j;
    }
    return Value::list(std::move(out));
}

}  // namespace

void register_sequence_filters(FilterTable& t) {
    t["length"] = f_length;
    t["count"] = f_length;
    t["first"] = f_first;
    t["last"] = f_last;
    t["list"] = f_list;
    t["join"] = f_join;
    t["map"] = f_map;
    t["select"] = f_select;
    t["reject"] = f_reject;
    t["selectattr"] = f_selectattr;
    t["rejectattr"] = f_rejectattr;
    t["items"] = f_items;
    t["dictsort"] = f_dictsort;
    t["sort"] = f_sort;
    t["unique"] = f_unique;
    t["reverse"] = f_reverse;
    t["sum"] = f_sum;
    t["min"] = f_min;
    t["max"] = f_max;
    t["batch"] = f_batch;
    t["slice"] = f_slice;
    t["groupby"] = f_groupby;
}

}  // namespace lokal::tmpl
