// Jinja's default global functions: range (sandboxed), dict, namespace, cycler, joiner.
#include "template/builtins.h"
#include "template/filters_impl.h"

namespace lokal::tmpl {

namespace {

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

void fill_dict(Dict& d, CallArgs& a, const char* fn) {
    if (a.pos.size() > 1)
        throw_type(std::string(fn) + " expected at most 1 argument, got " +
                   std::to_string(a.pos.size()));
    if (!a.pos.empty()) {
        const Value& src = a.pos[0];
        if (src.is_undefined()) undefined_error(src);  // dict() probes .keys on it
        if (src.is_mapping()) {
            for (const auto& [k, v] : src.dict().entries()) d.set(k, v);
        } else {
            for (const auto& item : iterate(src)) {
                std::vector<Value> kv = iterate(item);
                if (kv.size() != 2)
                    throw_type("dictionary update sequence element has length " +
                               std::to_string(kv.size()) + "; 2 is required");
                d.set(kv[0], kv[1]);
            }
        }
    }
    for (auto& [k, v] : a.kw) d.set(Value(k), v);
}

Value g_range(Context& ctx, CallArgs& a) {
    if (!a.kw.empty()) throw_type("range() takes no keyword arguments");
    if (a.pos.empty() || a.pos.size() > 3)
        throw_type("range expected at most 3 arguments, got " + std::to_string(a.pos.size()));
    for (const auto& v : a.pos)
        if (!v.is_integral())
            throw_type("'" + type_name(v) + "' object cannot be interpreted as an integer");
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) {
        stop = a.pos[0].i();
    } else {
        start = a.pos[0].i();
        stop = a.pos[1].i();
        if (a.pos.size() == 3) step = a.pos[2].i();
    }
    if (step == 0) throw_type("range() arg 3 must not be zero");
    __int128 span = step > 0 ? (static_cast<__int128>(stop) - start + step - 1) / step
                             : (static_cast<__int128>(start) - stop - step - 1) / -step;
    if (span > kMaxRange)
        throw Error(ErrorKind::Limit,
                    "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    ctx.step(span > 0 ? static_cast<uint64_t>(span) / 16 : 0);
    return Value::range(start, stop, step);
}

Value g_dict(Context&, CallArgs& a) {
    auto d = std::make_shared<Dict>();
    fill_dict(*d, a, "dict");
    return Value::dict(std::move(d));
}

Value g_namespace(Context& ctx, CallArgs& a) {
    auto d = std::make_shared<Dict>();
    fill_dict(*d, a, "namespace");
    d->is_namespace = true;
    ctx.track(d);
    return Value::dict(std::move(d));
}

class Cycler : public Object, public std::enable_shared_from_this<Cycler> {
  public:
    explicit Cycler(std::vector<Value> items) : items_(std::move(items)) {}
    std::string type_name() const override { return "Cycler"; }
    void clear() override {
        ReleaseScope rs;
        for (auto& v : items_) v.release_into_trash();
        items_.clear();
    }
    Value attr(std::string_view name) override {
        if (name == "current") return items_.empty() ? Value::none() : items_[pos_];
        auto self = shared_from_this();
        if (name == "next")
            return make_function("next", [self](Context&, CallArgs& a) {
                ArgReader(a, "next", {});
                if (self->items_.empty()) return Value::none();
                Value v = self->items_[self->pos_];
                self->pos_ = (self->pos_ + 1) % self->items_.size();
                return v;
            });
        if (name == "reset")
            return make_function("reset", [self](Context&, CallArgs& a) {
                ArgReader(a, "reset", {});
                self->pos_ = 0;
                return Value::none();
            });
        return Object::attr(name);
    }

  private:
    std::vector<Value> items_;
    size_t pos_ = 0;
};

Value g_cycler(Context& ctx, CallArgs& a) {
    if (a.pos.empty()) throw Error(ErrorKind::Runtime, "at least one item has to be provided");
    auto c = std::make_shared<Cycler>(a.pos);
    ctx.track(c);
    return Value::object(c);
}

class Joiner : public Object {
  public:
    explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
    std::string type_name() const override { return "Joiner"; }
    bool callable() const override { return true; }
    Value call(Context&, CallArgs& a) override {
        ArgReader(a, "joiner", {});
        if (!used_) {
            used_ = true;
            return Value("");
        }
        return Value(sep_);
    }

  private:
    std::string sep_;
    bool used_ = false;
};

Value g_joiner(Context&, CallArgs& a) {
    ArgReader r(a, "joiner", {"sep"});
    return Value::object(std::make_shared<Joiner>(r.has(0) ? to_str(*r.get(0)) : ", "));
}

}  // namespace

void install_default_globals(Scope& scope) {
    scope.set("range", make_function("range", g_range));
    scope.set("dict", make_function("dict", g_dict));
    scope.set("namespace", make_function("namespace", g_namespace));
    scope.set("cycler", make_function("cycler", g_cycler));
    scope.set("joiner", make_function("joiner", g_joiner));
}

}  // namespace lokal::tmpl
