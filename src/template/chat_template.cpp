#include "template/chat_template.h"

#include <vector>

namespace lokal::tmpl {

namespace {

std::string strftime_tm(const std::string& fmt, const std::tm& when) {
    if (fmt.empty()) return "";
    if (fmt.size() > 4096) throw Error(ErrorKind::Limit, "strftime format too long");
    std::tm t = when;
    // Normalize the weekday and day of the year from the date fields.
    std::tm norm = t;
    norm.tm_isdst = 0;
    const time_t secs = timegm(&norm);
    std::tm utc{};
    gmtime_r(&secs, &utc);
    t.tm_wday = utc.tm_wday;
    t.tm_yday = utc.tm_yday;
    std::vector<char> buf(fmt.size() * 16 + 64);
    const size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &t);
    return std::string(buf.data(), n);
}

Value chat_value(const Value& messages, bool add_generation_prompt, const std::string& bos,
                 const std::string& eos, const Value& tools, const Value& extra) {
    auto d = std::make_shared<Dict>();
    d->set(Value("messages"), messages);
    if (!tools.is_none()) d->set(Value("tools"), tools);
    d->set(Value("add_generation_prompt"), Value(add_generation_prompt));
    d->set(Value("bos_token"), Value(bos));
    d->set(Value("eos_token"), Value(eos));
    if (extra.is_mapping())
        for (const auto& [k, v] : extra.dict().entries()) d->set(k, v);
    else if (!extra.is_none())
        throw Error(ErrorKind::Type, "extra context must be an object");
    return Value::dict(std::move(d));
}

std::string render_chat(const Template& t, const Value& context, const ChatOptions& options) {
    RenderOptions ro;
    ro.limits = options.limits;
    ro.globals.emplace_back("raise_exception",
                            make_function("raise_exception", [](Context&, CallArgs& a) -> Value {
                                ArgReader r(a, "raise_exception", {"message"});
                                throw Error(ErrorKind::Raised, r.has(0) ? to_str(*r.get(0)) : "");
                            }));
    std::tm now{};
    if (options.now) {
        now = *options.now;
    } else {
        const time_t secs = std::time(nullptr);
        localtime_r(&secs, &now);
    }
    ro.globals.emplace_back("strftime_now",
                            make_function("strftime_now", [now](Context&, CallArgs& a) {
                                ArgReader r(a, "strftime_now", {"format"});
                                if (!r.has(0) || !r.get(0)->is_string())
                                    throw_type("strftime_now() argument must be str");
                                return Value(strftime_tm(r.get(0)->s(), now));
                            }));
    return t.render(context, ro);
}

template <class Json>
Value json_or_none(const Json& j) {
    return j.is_null() ? Value::none() : from_json(j);
}

}  // namespace

ChatTemplate::ChatTemplate(std::string_view source) : tmpl_(Template::parse(source)) {}

std::string ChatTemplate::apply(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                const std::string& bos_token, const std::string& eos_token,
                                const nlohmann::ordered_json& tools,
                                const nlohmann::ordered_json& extra,
                                const ChatOptions& options) const {
    const Value ctx = chat_value(from_json(messages), add_generation_prompt, bos_token, eos_token,
                                 json_or_none(tools), json_or_none(extra));
    return render_chat(tmpl_, ctx, options);
}

std::string apply_chat_template(const std::string& source, const nlohmann::json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token, const nlohmann::json& tools,
                                const nlohmann::json& extra, const ChatOptions& options) {
    const Template t = Template::parse(source);
    const Value ctx = chat_value(from_json(messages), add_generation_prompt, bos_token, eos_token,
                                 json_or_none(tools), json_or_none(extra));
    return render_chat(t, ctx, options);
}

std::string apply_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token, const nlohmann::ordered_json& tools,
                                const nlohmann::ordered_json& extra, const ChatOptions& options) {
    return ChatTemplate(source).apply(messages, add_generation_prompt, bos_token, eos_token, tools,
                                      extra, options);
}

}  // namespace lokal::tmpl
