// Ollama's model-management API over the model store (src/store): /api/pull, /api/push
// (NDJSON progress), /api/create, /api/copy, DELETE /api/delete and /api/blobs/:digest.
//
// Requests are validated (name syntax, the model exists) before any byte of a streamed
// answer goes out, so those failures keep their HTTP status; a failure after that is an
// {"error": ...} line, as Ollama does. A client that goes away cancels a pull or push at
// its next progress report.
#include <chrono>
#include <filesystem>
#include <mutex>

#include "server/server_impl.h"
#include "store/create.h"
#include "store/registry.h"
#include "store/store.h"

namespace lokal::server {

namespace {

namespace fs = std::filesystem;

store::Store open_store(const Server::Impl& s) {
    const std::string& dir = s.opts.models.store_dir;
    return store::Store(dir.empty() ? store::default_store_dir() : dir);
}

// "model" (current Ollama) or "name" (older clients, ollama-js for pull/push/delete).
std::string model_field(const json& body, const char* key = "model") {
    std::string v = get_string(body, key).value_or("");
    if (v.empty()) v = get_string(body, "name").value_or("");
    if (v.empty()) throw HttpError(400, std::string("field '") + key + "' is required");
    return v;
}

store::ModelName parse_model_name(const std::string& s) {
    try {
        return store::parse_name(s);
    } catch (const std::exception& e) {
        throw HttpError(400, std::string("invalid model name: ") + e.what());
    }
}

// A loaded model whose store entry changed (replaced, deleted) is unloaded so the next
// request loads what the store now holds; running requests keep their copy.
void forget_loaded(Server::Impl& s, const store::ModelName& n) {
    for (auto& m : s.registry.loaded()) {
        auto mn = store::try_parse_name(m->name);
        if (mn && *mn == n) s.registry.unload(m->name);
    }
}

// Progress lines of one job. Thread-safe: pull and push report from several threads.
class Reporter {
  public:
    explicit Reporter(httplib::DataSink* sink) : sink_(sink) {}
    // False when the client went away (the job should stop).
    bool emit(const json& j) {
        std::lock_guard lk(mu_);
        if (!sink_) return true;
        if (!ok_) return false;
        const std::string line = to_text(j) + "\n";
        ok_ = sink_->write(line.data(), line.size());
        return ok_;
    }
    bool status(const std::string& s) { return emit({{"status", s}}); }
    // Byte progress, at most ten lines a second (and always the last one).
    bool bytes(const std::string& what, uint64_t done, uint64_t total) {
        const auto now = std::chrono::steady_clock::now();
        {
            std::lock_guard lk(mu_);
            if (done < total && now - last_ < std::chrono::milliseconds(100)) return ok_;
            last_ = now;
        }
        return emit({{"status", what}, {"digest", ""}, {"total", total}, {"completed", done}});
    }

  private:
    std::mutex mu_;
    httplib::DataSink* sink_;
    bool ok_ = true;
    std::chrono::steady_clock::time_point last_{};
};

// A store failure after validation: a missing remote model is a 404, the rest a 500.
HttpError store_error(const std::exception& e) {
    const std::string msg = e.what();
    if (msg.find("not found") != std::string::npos) return HttpError(404, msg, "not_found_error");
    return HttpError(500, msg, "server_error");
}

// Runs `job` and answers {"status":"success"}: streamed as NDJSON progress lines ending
// in that (or in {"error": ...}), or as one JSON object when not streaming.
void run_job(httplib::Response& res, bool stream, std::function<void(Reporter&)> job) {
    if (!stream) {
        Reporter quiet(nullptr);
        try {
            job(quiet);
        } catch (const HttpError&) {
            throw;
        } catch (const std::exception& e) {
            throw store_error(e);
        }
        res.set_content(to_text(json{{"status", "success"}}), "application/json");
        return;
    }
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider("application/x-ndjson",
                                     [job = std::move(job)](size_t, httplib::DataSink& sink) {
                                         Reporter r(&sink);
                                         try {
                                             job(r);
                                             r.status("success");
                                         } catch (const std::exception& e) {
                                             r.emit({{"error", e.what()}});
                                         }
                                         sink.done();
                                         return true;
                                     });
}

store::RegistryOptions registry_options(const json& body, Reporter& r, const std::string& what) {
    store::RegistryOptions o;
    o.insecure = get_bool(body, "insecure").value_or(false);
    o.status = [&r](const std::string& s) { r.status(s); };
    o.progress = [&r, what](uint64_t d, uint64_t t) { return r.bytes(what, d, t); };
    return o;
}

// PARAMETER values from a JSON object ({"temperature":0.7,"stop":["a","b"]}) in the raw
// string form parameters_to_json validates.
std::vector<std::pair<std::string, std::string>> parameters_of(const json& body) {
    std::vector<std::pair<std::string, std::string>> out;
    auto it = body.find("parameters");
    if (it == body.end() || it->is_null()) return out;
    if (!it->is_object()) throw HttpError(400, "field 'parameters' must be an object");
    for (auto& item : it->items()) {
        const std::string& k = item.key();  // not a structured binding: clang < 16 cannot
        const json& v = item.value();       // capture one in the lambda below
        auto one = [&](const json& x) {
            if (x.is_string())
                out.emplace_back(k, x.get<std::string>());
            else if (x.is_number())
                out.emplace_back(k, to_text(x));
            else
                throw HttpError(400, "parameter '" + k + "' must be a number or a string");
        };
        if (v.is_array())
            for (auto& x : v) one(x);
        else
            one(v);
    }
    return out;
}

// The GGUF digest of a `files` map ({"model.gguf": "sha256:..."}) uploaded as blobs.
std::string blob_file(const store::Store& st, const json& files, const char* field) {
    if (!files.is_object() || files.size() != 1)
        throw HttpError(400, std::string("field '") + field +
                                 "' must map exactly one file name to a blob digest");
    const json& d = files.begin().value();
    if (!d.is_string()) throw HttpError(400, std::string("field '") + field + "' holds digests");
    auto digest = store::try_parse_digest(d.get<std::string>());
    if (!digest) throw HttpError(400, "invalid blob digest " + to_text(d));
    const std::string path = st.blob_path(*digest);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
        throw HttpError(400, "blob " + digest->str() + " is not on the server (POST /api/blobs)");
    return path;
}

// FROM over HTTP: a stored model (its layers are inherited), else a model the server can
// load by that name (a --models-dir file name, or the path given to `serve -m`). Never
// another server path or a directory: converting server folders is for the CLI.
std::string resolve_from(Server::Impl& s, const store::Store& st, const std::string& from) {
    auto n = store::try_parse_name(from);
    if (n && st.read_manifest(*n)) return n->full();
    std::string path = s.registry.resolve_path(from);
    if (path.empty()) throw HttpError(404, "model '" + from + "' not found", "not_found_error");
    return path;
}

// /api/create body -> Modelfile. Either the older {"modelfile": "..."} or the fields of
// current Ollama (from / files, template, system, parameters, messages, license, adapters).
store::Modelfile modelfile_of(Server::Impl& s, const store::Store& st, const json& body) {
    if (auto text = get_string(body, "modelfile")) {
        store::Modelfile mf;
        try {
            mf = store::parse_modelfile(*text);
        } catch (const std::exception& e) {
            throw HttpError(400, std::string("modelfile: ") + e.what());
        }
        // ADAPTER takes any file: with push, that would ship server files to a registry.
        if (mf.adapter)
            throw HttpError(400,
                            "ADAPTER paths are not accepted over HTTP; upload the adapter "
                            "(POST /api/blobs) and name it in 'adapters'");
        mf.from = resolve_from(s, st, mf.from);
        return mf;
    }
    reject_fields(body, {"quantize"});
    store::Modelfile mf;
    if (auto it = body.find("files"); it != body.end() && !it->is_null()) {
        mf.from = blob_file(st, *it, "files");
    } else {
        const std::string from = get_string(body, "from").value_or("");
        if (from.empty()) throw HttpError(400, "field 'from' (or 'files') is required");
        mf.from = resolve_from(s, st, from);
    }
    if (auto it = body.find("adapters"); it != body.end() && !it->is_null())
        mf.adapter = blob_file(st, *it, "adapters");
    mf.chat_template = get_string(body, "template");
    mf.system = get_string(body, "system");
    mf.licenses = get_string_list(body, "license");
    mf.parameters = parameters_of(body);
    if (auto it = body.find("messages"); it != body.end() && !it->is_null()) {
        if (!it->is_array()) throw HttpError(400, "field 'messages' must be a list");
        for (auto& m : *it) {
            if (!m.is_object()) throw HttpError(400, "each message must be an object");
            mf.messages.emplace_back(get_string(m, "role").value_or(""),
                                     get_string(m, "content").value_or(""));
        }
    }
    return mf;
}

void pull_route(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req, s.opts.max_json_depth);
    const store::ModelName name = parse_model_name(model_field(body));
    const bool stream = get_bool(body, "stream").value_or(true);
    run_job(res, stream, [&s, body, name](Reporter& r) {
        store::Store st = open_store(s);
        auto o = registry_options(body, r, "pulling " + name.display());
        store::pull(st, name, o);
        forget_loaded(s, name);
    });
}

void push_route(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req, s.opts.max_json_depth);
    const store::ModelName name = parse_model_name(model_field(body));
    if (!open_store(s).read_manifest(name))
        throw HttpError(404, "model '" + name.display() + "' not found", "not_found_error");
    const bool stream = get_bool(body, "stream").value_or(true);
    run_job(res, stream, [&s, body, name](Reporter& r) {
        store::Store st = open_store(s);
        r.status("retrieving manifest");
        auto o = registry_options(body, r, "pushing " + name.display());
        store::push(st, name, o);
    });
}

void create_route(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req, s.opts.max_json_depth);
    const store::ModelName name = parse_model_name(model_field(body));
    store::Store st = open_store(s);
    store::Modelfile mf = modelfile_of(s, st, body);
    try {
        store::parameters_to_json(mf.parameters);  // a bad parameter is the client's error
    } catch (const std::exception& e) {
        throw HttpError(400, e.what());
    }
    const bool stream = get_bool(body, "stream").value_or(true);
    run_job(res, stream, [&s, name, mf](Reporter& r) {
        store::Store st = open_store(s);
        store::CreateOptions o;  // FROM is resolved already: an absolute path or a name
        o.status = [&r](const std::string& line) { r.status(line); };
        store::create_model(st, name, mf, o);
        forget_loaded(s, name);
    });
}

void copy_route(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req, s.opts.max_json_depth);
    const std::string src_s = get_string(body, "source").value_or("");
    const std::string dst_s = get_string(body, "destination").value_or("");
    if (src_s.empty() || dst_s.empty())
        throw HttpError(400, "fields 'source' and 'destination' are required");
    const store::ModelName src = parse_model_name(src_s), dst = parse_model_name(dst_s);
    store::Store st = open_store(s);
    if (!st.read_manifest(src))
        throw HttpError(404, "model '" + src_s + "' not found", "not_found_error");
    try {
        st.copy(src, dst);
    } catch (const std::exception& e) {
        throw store_error(e);
    }
    forget_loaded(s, dst);
    res.set_content("", "application/json");
}

void delete_route(Server::Impl& s, const httplib::Request& req, httplib::Response& res) {
    const json body = parse_body(req, s.opts.max_json_depth);
    const store::ModelName name = parse_model_name(model_field(body));
    store::Store st = open_store(s);
    if (!st.read_manifest(name))
        throw HttpError(404, "model '" + name.display() + "' not found", "not_found_error");
    forget_loaded(s, name);  // the blob stays mapped by requests still running on it
    try {
        st.remove(name);
    } catch (const std::exception& e) {
        throw store_error(e);
    }
    res.set_content("", "application/json");
}

store::Digest digest_param(const httplib::Request& req) {
    auto d = store::try_parse_digest(std::string(req.matches[1]));
    if (!d) throw HttpError(400, "invalid digest (want sha256:<64 lowercase hex>)");
    return *d;
}

}  // namespace

void register_store(Server::Impl& s) {
    auto route = [&s](void (*fn)(Server::Impl&, const httplib::Request&, httplib::Response&)) {
        return guarded(
            s, Api::Ollama,
            [&s, fn](const httplib::Request& req, httplib::Response& res) { fn(s, req, res); });
    };
    s.post("/api/pull", route(pull_route));
    s.post("/api/push", route(push_route));
    s.post("/api/create", route(create_route));
    s.post("/api/copy", route(copy_route));
    s.del("/api/delete", route(delete_route));

    // Blobs for /api/create's `files`. Uploads stream to disk as they arrive, so memory stays
    // flat: chunked ones (Ollama's CLI sends files so) of any size, Content-Length ones up to
    // --max-body (httplib's cap). The blob is kept only if it hashes to the digest in the
    // path. httplib routes HEAD to GET handlers.
    s.get(R"(/api/blobs/([^/]+))",
          guarded(s, Api::Ollama,
                  [&s](const httplib::Request& req, httplib::Response& res) {
                      const store::Digest d = digest_param(req);
                      std::error_code ec;
                      res.status = fs::is_regular_file(open_store(s).blob_path(d), ec) ? 200 : 404;
                  }),
          "/api/blobs/{digest}");
    s.http.Post(R"(/api/blobs/([^/]+))", [&s](const httplib::Request& req, httplib::Response& res,
                                              const httplib::ContentReader& reader) {
        guarded(s, Api::Ollama, [&](const httplib::Request& rq, httplib::Response& rs) {
            const store::Digest d = digest_param(rq);
            store::Store st = open_store(s);
            auto lock = st.lock_shared();
            try {
                st.add_blob_stream(
                    [&](const std::function<bool(const char*, size_t)>& sink) {
                        return reader([&](const char* data, size_t n) { return sink(data, n); });
                    },
                    &d, "application/octet-stream");
            } catch (const store::Error& e) {
                throw HttpError(400, e.what());
            }
            rs.status = 201;
        })(req, res);
    });
}

}  // namespace lokal::server
