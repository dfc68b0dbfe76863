#!/usr/bin/env python3
"""Serving benchmark: `lokal serve` beside the anchor's llama-server, same model, same run.

    bench/serve.py --model M.gguf [--lokal build/bin/lokal] [--anchor ../shared/anchor]
                   [--threads 2] [--parallel 8] [--only lokal|anchor] [--json OUT]
                   [--temperature T] [--top-p P]

Both servers get the same threads, the same number of parallel sequences and the same
context per sequence, and are measured one after the other over /v1/completions:

  single      one streaming request, generation tokens/s (first token to last)
  parallel8   8 concurrent streaming requests, total generated tokens / wall time (from
              sending the requests, so with their prompts), and the generation phase alone
              (tokens after each stream's first, from the first first token to the last
              token: like for like with single's rate, which excludes its prompt); the
              ratios to single are printed both ways
  ttft        time to first token of a short request, idle and while 7 long ones run
              (requests sent back to back, and at random moments)
  prefix      time to first token of a 500-token prompt, then of a second prompt that
              shares its first 500 tokens (the prefix cache's work)
  rtt         idle HTTP round trip (GET /health on a kept-alive connection), p50 / p99

Generations have a fixed length: EOS is banned with logit_bias (and ignore_eos for
llama-server), so both servers produce exactly max_tokens tokens. Standard library only.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

EOS = 2  # llama / SentencePiece vocabularies


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name, argv, port, env=None):
        self.name, self.port = name, port
        self.log = open(f"/tmp/bench-serve-{name}.log", "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"{name} exited at start (see {self.log.name})")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit(f"{name} did not become healthy")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv(s):
    # Acknowledge at once: a delayed ACK (40 ms on Linux) would hold back the next small
    # write of a server that leaves Nagle's algorithm on, and time the client, not it.
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return s.recv(1 << 16)


# Every request's temperature (--temperature): 0 (greedy) by default; 1 is what OpenAI
# clients send when they set none, and with no other field lokal then samples from the whole
# vocabulary (llama-server applies its own default top-k/top-p/min-p).
TEMPERATURE = 0.0
# Every request's top_p (--top-p), sent when below 1: OpenAI clients often set 0.9-0.95, and
# lokal's OpenAI endpoints then cut the vocabulary with top-p alone (no top-k, no min-p).
TOP_P = 1.0


def complete(port, prompt, max_tokens, anchor):
    """One streaming completion: (seconds to first token, seconds to the end, the
    perf_counter() at which the request was sent)."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": TEMPERATURE, "stream": True,
            "logit_bias": {str(EOS): -100}}
    if TOP_P < 1:
        body["top_p"] = TOP_P
    if anchor:
        body["ignore_eos"] = True
        body["cache_prompt"] = True
    # No "model": each server answers with the one it was started with.
    data = json.dumps(body).encode()
    s = connect(port)
    t0 = time.perf_counter()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    first, got = None, b""
    while True:
        chunk = recv(s)
        if not chunk:
            break
        got += chunk
        # SSE events are written whole; the first one carries the first token.
        if first is None and b"data: " in got:
            first = time.perf_counter() - t0
    end = time.perf_counter() - t0
    s.close()
    if not got.startswith(b"HTTP/1.1 200") or b"data: [DONE]" not in got:
        raise RuntimeError(f"bad answer: {got[:300]!r}")
    return first, end, t0


def round_trips(port, n):
    """Seconds per GET /health on a kept-alive connection (reconnecting, inside the timed
    span, when the server closes it: httplib servers allow a few requests per connection)."""
    s = None
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        if s is None:
            s = connect(port)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        got = b""
        while True:
            chunk = recv(s)
            if not chunk:
                raise RuntimeError("the server closed the connection mid-answer")
            got += chunk
            head, sep, rest = got.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(rest) >= length:
                    break
        if b"\r\nconnection: close" in head.lower():
            s.close()
            s = None
        out.append(time.perf_counter() - t0)
    if s:
        s.close()
    return out


def words(n, seed):
    rnd = random.Random(seed)
    vocab = ["cat", "dog", "sun", "tree", "house", "river", "bird", "stone", "light", "cloud",
             "green", "small", "happy", "quick", "blue", "old", "road", "night", "song", "rain"]
    return " ".join(rnd.choice(vocab) for _ in range(n))


def ratio(a, b):
    return None if a is None or b is None else a / b


def measure(port, anchor, gen_tokens, long_tokens):
    out = {}
    prompt = "Once upon a time there was a little girl named Lily. She"
    complete(port, prompt, 4, anchor)  # warm-up: pages the weights in

    say = lambda what: print(f"  {what}", file=sys.stderr, flush=True)
    say("single")
    # One request alone.
    first, end, _ = complete(port, prompt, gen_tokens, anchor)
    out["single_tps"] = (gen_tokens - 1) / (end - first)
    out["single_wall_tps"] = gen_tokens / end  # with its prompt and first token

    say("parallel8")
    # Eight at once.
    results = [None] * 8

    def run(i):
        results[i] = complete(port, f"{prompt} {i}", gen_tokens, anchor)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out["parallel8_tps"] = 8 * gen_tokens / (time.perf_counter() - t0)
    out["parallel8_speedup"] = out["parallel8_tps"] / out["single_tps"]
    # Like for like with single_tps: the tokens after each stream's first, over the span
    # from the first stream's first token to the last stream's last.
    firsts = [r[2] + r[0] for r in results]
    ends = [r[2] + r[1] for r in results]
    out["parallel8_gen_tps"] = 8 * (gen_tokens - 1) / (max(ends) - min(firsts))
    out["parallel8_gen_speedup"] = out["parallel8_gen_tps"] / out["single_tps"]
    out["parallel8_e2e_speedup"] = out["parallel8_tps"] / out["single_wall_tps"]

    say("ttft")
    # Short request: idle, then beside 7 long generations (already decoding).
    short = "The dog"
    idle = [complete(port, f"{short} {i}", 1, anchor)[0] for i in range(5)]
    out["ttft_idle_ms"] = 1000 * statistics.median(idle)
    started = threading.Barrier(8)
    longs = []

    def long_run(i):
        started.wait()
        complete(port, f"{prompt} and {i}", long_tokens, anchor)

    for i in range(7):
        t = threading.Thread(target=long_run, args=(i,))
        t.start()
        longs.append(t)
    started.wait()
    time.sleep(3.0)  # their prompts are in; they are generating
    # Back to back: each request is sent as soon as the previous one is answered, which is
    # when the server has just started a step of the 7 decoding sequences: a full step's
    # wait every time (the worst case). Then at random moments (uniform 0-250 ms after the
    # previous answer, the same seeded draws for both engines), as users arrive: on average
    # half a step's wait.
    busy = [complete(port, f"{short} busy {i}", 1, anchor)[0] for i in range(5)]
    decoding_after_b2b = sum(t.is_alive() for t in longs)
    draws = random.Random(1)
    busy_random = []
    for i in range(9):
        time.sleep(draws.uniform(0.0, 0.25))
        busy_random.append(complete(port, f"{short} late {i}", 1, anchor)[0])
    still_decoding = sum(t.is_alive() for t in longs)
    for t in longs:
        t.join()
    # A busy TTFT only counts if all 7 long generations were still decoding when the short
    # requests went out; otherwise the measure is dropped (None, "n/a" in the table), not
    # reported as if it had been taken beside them.
    out["ttft_busy_b2b_ms"] = 1000 * statistics.median(busy) if decoding_after_b2b == 7 else None
    out["ttft_busy_ms"] = 1000 * statistics.median(busy_random) if still_decoding == 7 else None
    for key, alive in (("back to back", decoding_after_b2b), ("random arrival", still_decoding)):
        if alive < 7:
            print(f"  {key}: only {alive} of the 7 long generations outlasted the short "
                  "requests; measure dropped (raise --long)", file=sys.stderr)
    out["ttft_ratio_b2b"] = ratio(out["ttft_busy_b2b_ms"], out["ttft_idle_ms"])
    out["ttft_ratio"] = ratio(out["ttft_busy_ms"], out["ttft_idle_ms"])

    say("prefix")
    # Prefix cache: a 500-token prompt, then another with the same first 500 tokens.
    nonce = random.randrange(1 << 30)
    prefix = f"{nonce} " + words(491, nonce)  # 500 tokens with a llama vocabulary
    a = complete(port, prefix + " Then the cat said", 1, anchor)[0]
    b = complete(port, prefix + " Then the dog ran", 1, anchor)[0]
    out["prefix_first_ms"], out["prefix_second_ms"] = 1000 * a, 1000 * b
    out["prefix_speedup"] = a / b

    say("rtt")
    # Idle round trip.
    rtts = sorted(round_trips(port, 1200)[200:])
    out["rtt_p50_ms"] = 1000 * rtts[len(rtts) // 2]
    out["rtt_p99_ms"] = 1000 * rtts[int(len(rtts) * 0.99)]
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lokal", default=os.path.join(root, "build/bin/lokal"))
    ap.add_argument("--anchor", default=os.path.join(root, "../shared/anchor"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=1024, help="context per sequence")
    ap.add_argument("--gen", type=int, default=64, help="tokens per generation")
    ap.add_argument("--long", type=int, default=384,
                    help="tokens of the 7 long generations (they must outlast the ~6 s of short requests)")
    ap.add_argument("--only", choices=["lokal", "anchor"])
    ap.add_argument("--rounds", type=int, default=1, help="repeat, engines interleaved; keep the best")
    ap.add_argument("--json")
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="every request's temperature (default 0, greedy; 1: OpenAI clients' default)")
    ap.add_argument("--top-p", type=float, default=1.0,
                    help="every request's top_p, sent when below 1 (default 1: not sent)")
    args = ap.parse_args()
    global TEMPERATURE, TOP_P
    TEMPERATURE = args.temperature
    TOP_P = args.top_p

    rounds = {}
    names = [n for n in ["lokal", "anchor"] if not args.only or args.only == n]
    for rnd in range(args.rounds):
        for name in names:
            rounds.setdefault(name, []).append(run_one(name, args, rnd))
    # Best of the rounds per measure (load on a shared machine comes and goes, hitting
    # both engines alike), the ratios recomputed from those.
    runs = {}
    for name, rs in rounds.items():
        best = {}
        for key in rs[0]:
            vals = [r[key] for r in rs if r[key] is not None]  # None: a dropped measure
            best[key] = None if not vals else min(vals) if key.endswith("_ms") else max(vals)
        best["parallel8_speedup"] = ratio(best["parallel8_tps"], best["single_tps"])
        best["parallel8_gen_speedup"] = ratio(best["parallel8_gen_tps"], best["single_tps"])
        best["parallel8_e2e_speedup"] = ratio(best["parallel8_tps"], best["single_wall_tps"])
        best["ttft_ratio"] = ratio(best["ttft_busy_ms"], best["ttft_idle_ms"])
        best["ttft_ratio_b2b"] = ratio(best["ttft_busy_b2b_ms"], best["ttft_idle_ms"])
        best["prefix_speedup"] = ratio(best["prefix_first_ms"], best["prefix_second_ms"])
        runs[name] = best
    report(runs, rounds, args)


def run_one(name, args, rnd):
    port = free_port()
    if name == "lokal":
        argv = [args.lokal, "serve", "--port", str(port), "-m", args.model, "-t",
                str(args.threads), "--parallel", str(args.parallel), "-c", str(args.ctx)]
        env = None
    else:
        argv = [os.path.join(args.anchor, "llama-server"), "-m", args.model, "--port",
                str(port), "-t", str(args.threads), "-tb", str(args.threads), "--parallel",
                str(args.parallel), "-c", str(args.ctx * args.parallel), "--no-webui"]
        env = dict(os.environ, LD_LIBRARY_PATH=args.anchor)
    print(f"{name}: {' '.join(argv)}", file=sys.stderr, flush=True)
    srv = Server(name, argv, port, env)
    try:
        res = measure(port, name == "anchor", args.gen, args.long)
    finally:
        srv.stop()
    print(f"{name} round {rnd + 1}: {json.dumps(res)}", file=sys.stderr)
    return res


def report(runs, rounds, args):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, {args.threads} threads, --parallel {args.parallel}, "
          f"best of {args.rounds} round(s), {os.path.basename(args.model)}, "
          f"temperature {args.temperature:g}"
          + (f", top_p {args.top_p:g}" if args.top_p < 1 else "") + "\n")
    rows = [("single request, tokens/s (first token to last)", "single_tps", "%.1f"),
            ("single request, tokens/s (request to last token)", "single_wall_tps", "%.1f"),
            ("8 concurrent streams, total tokens/s (requests to last token)", "parallel8_tps", "%.1f"),
            ("  ratio to a single request's first-to-last rate", "parallel8_speedup", "%.2fx"),
            ("  ratio to a single request's request-to-last rate", "parallel8_e2e_speedup", "%.2fx"),
            ("8 concurrent streams, total tokens/s (first token to last)", "parallel8_gen_tps", "%.1f"),
            ("  ratio to a single request's first-to-last rate", "parallel8_gen_speedup", "%.2fx"),
            ("TTFT short request, idle (ms)", "ttft_idle_ms", "%.0f"),
            ("TTFT short request beside 7 long, random arrival (ms)", "ttft_busy_ms", "%.0f"),
            ("  ratio busy / idle", "ttft_ratio", "%.2fx"),
            ("TTFT short request beside 7 long, back to back (ms)", "ttft_busy_b2b_ms", "%.0f"),
            ("  ratio busy / idle", "ttft_ratio_b2b", "%.2fx"),
            ("TTFT 500-token prompt, first (ms)", "prefix_first_ms", "%.0f"),
            ("TTFT same 500-token prefix, second (ms)", "prefix_second_ms", "%.0f"),
            ("  prefix-cache speedup", "prefix_speedup", "%.1fx"),
            ("idle round trip p50 (ms)", "rtt_p50_ms", "%.3f"),
            ("idle round trip p99 (ms)", "rtt_p99_ms", "%.3f")]
    names = list(runs)
    print("| measure | " + " | ".join(names) + (" | lokal / anchor |" if len(names) == 2 else " |"))
    print("|---|" + "---|" * (len(names) + (1 if len(names) == 2 else 0)))
    for label, key, fmt in rows:
        cells = ["n/a" if runs[n][key] is None else fmt % runs[n][key] for n in names]
        if len(names) == 2:
            r = ratio(runs["lokal"][key], runs["anchor"][key])
            cells.append("n/a" if r is None else "%.2f" % r)
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "best": runs, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    main()
