// The store commands end to end through the command line: exit codes, one-line errors,
// output of list/show, and a push/pull through a real registry.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "helpers.h"
#include "registry_fixture.h"

using namespace lokal::test;

namespace {

struct Result {
    int rc = -1;
    std::string out, err;
};

class Cli : public ::testing::Test {
  protected:
    Result run(std::vector<std::string> args) {
        std::string out = dir_.sub("stdout"), err = dir_.sub("stderr");
        args.insert(args.begin(), LOKAL_STORE_CLI);
        pid_t pid = fork();
        if (pid == 0) {
            int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            dup2(o, 1);
            dup2(e, 2);
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            setenv("LOKAL_HOME", store_.c_str(), 1);
            execv(argv[0], argv.data());
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(out), read_text(err)};
    }
    // A failing command: non-zero exit, exactly one line on stderr containing needle.
    void expect_error(const std::vector<std::string>& args, const std::string& needle) {
        auto before = snapshot(store_);
        Result r = run(args);
        EXPECT_NE(r.rc, 0) << args[0];
        EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
        // Progress and status lines may come first; the error is one line, the last.
        size_t n = 0;
        for (size_t p = r.err.find("lokal:"); p != std::string::npos;
             p = r.err.find("lokal:", p + 1))
            ++n;
        EXPECT_EQ(n, 1u) << r.err;
        EXPECT_TRUE(r.err.ends_with("\n") &&
                    r.err.find('\n', r.err.find("lokal:")) == r.err.size() - 1)
            << r.err;
        EXPECT_EQ(snapshot(store_), before);
    }
    TempDir dir_;
    std::string store_ = dir_.sub("home");
};

}  // namespace

TEST_F(Cli, CreateListShowCopyRemove) {
    write_text(
        dir_.sub("work/Modelfile"),
        "FROM " + model_path("stories260K.gguf") +
            "\nPARAMETER temperature 0.4\nPARAMETER stop \"<s>\"\nSYSTEM Short stories only.\n");
    Result r = run({"create", "tiny", "-f", dir_.sub("work/Modelfile")});
    ASSERT_EQ(r.rc, 0) << r.err;
    r = run({"list"});
    EXPECT_EQ(r.rc, 0);
    EXPECT_NE(r.out.find("tiny:latest"), std::string::npos) << r.out;
    r = run({"show", "tiny"});
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("llama"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Short stories only."), std::string::npos) << r.out;
    r = run({"show", "tiny", "--parameters"});
    EXPECT_NE(r.out.find("temperature 0.4\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("stop \"<s>\""), std::string::npos) << r.out;
    r = run({"show", "tiny", "--modelfile"});
    EXPECT_NE(r.out.find("FROM " + store_ + "/blobs/sha256-"), std::string::npos) << r.out;
    r = run({"show", "tiny", "--json"});
    EXPECT_NE(r.out.find("\"architecture\": \"llama\""), std::string::npos) << r.out;
    EXPECT_EQ(run({"cp", "tiny", "team/tiny:v2"}).rc, 0);
    EXPECT_NE(run({"list"}).out.find("team/tiny:v2"), std::string::npos);
    EXPECT_EQ(run({"rm", "tiny"}).rc, 0);
    EXPECT_EQ(run({"list"}).out.find("tiny:latest"), std::string::npos);
    EXPECT_EQ(run({"prune"}).rc, 0);
    expect_error({"rm", "tiny"}, "not found");
    expect_error({"show", "nope"}, "not found");
    expect_error({"rm", "../../etc"}, "invalid model name");
    expect_error({"create", "x", "-f", dir_.sub("missing")}, "cannot open");
    write_text(dir_.sub("bad/Modelfile"),
               "FROM " + model_path("stories260K.gguf") + "\nPARAMETER temp 1\n");
    expect_error({"create", "x", "-f", dir_.sub("bad/Modelfile")}, "unknown parameter");
    expect_error({"pull", "x:../../y"}, "invalid model name");
    expect_error({"pull", "ftp://host/x.gguf"}, "invalid model name");
}

TEST_F(Cli, ConvertWritesGguf) {
    Result r = run({"convert", shared_path("models/TinyStories-656K-hf"), "-o",
                    dir_.sub("out.gguf"), "--type", "q8_0"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_GT(fs::file_size(dir_.sub("out.gguf")), 500000u);
    expect_error({"convert", dir_.path(), "-o", dir_.sub("x.gguf")}, "config.json");
    expect_error({"convert", shared_path("models/TinyStories-656K-hf"), "-o", dir_.sub("x.gguf"),
                  "--type", "q2_k"},
                 "unsupported output type");
}

TEST_F(Cli, PushAndPullThroughRegistry) {
    RegistryProcess reg;
    ASSERT_TRUE(reg.ok());
    std::string name = reg.host() + "/library/cli-tiny:v1";
    write_text(dir_.sub("Modelfile"), "FROM " + model_path("TinyStories-656K.Q8_0.gguf") + "\n");
    ASSERT_EQ(run({"create", name, "-f", dir_.sub("Modelfile")}).rc, 0);
    Result r = run({"push", name, "--insecure"});
    ASSERT_EQ(r.rc, 0) << r.err;
    std::string listed = run({"list"}).out;
    ASSERT_EQ(run({"rm", name}).rc, 0);
    r = run({"pull", name, "--insecure"});
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;  // the progress line
    EXPECT_NE(run({"list"}).out.find(reg.host() + "/library/cli-tiny:v1"), std::string::npos);
    expect_error({"pull", name}, "--insecure");  // https to a plain-http registry: a hint
    expect_error({"pull", reg.host() + "/library/absent", "--insecure"}, "not found");
}
