#!/usr/bin/env python3
"""Log-probabilities through `lokal serve` (Python 3, standard library).

    bench/serve_logprobs.py --model M.gguf [--lokal build/bin/lokal] [--threads 2]

Starts `lokal serve` and measures, over /v1/completions:

  streams   8 concurrent greedy requests of 64 tokens each with "logprobs": 5: total
            generated tokens / wall time, best of 3 rounds
  echo      one echoed prompt of ~800 tokens scored ("max_tokens": 0, "echo": true,
            "logprobs": 5, as lm-evaluation-harness does): milliseconds, best of 4

Both ask for a log-softmax over the whole vocabulary per token, which is what they time
beside the model (docs/PERFORMANCE.md, "Server").
"""
import argparse
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--lokal", default=os.path.join(root, "build/bin/lokal"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--port", type=int, default=18779)
    args = ap.parse_args()
    port = args.port
    server = subprocess.Popen([args.lokal, "serve", "-m", args.model, "--port", str(port), "-c",
                               "2048", "-t", str(args.threads), "--parallel", "8"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        def one(i, out):
            r = post(port, {"prompt": f"Story {i}: once upon a time", "max_tokens": 64,
                            "temperature": 0, "logprobs": 5})
            out[i] = r["usage"]["completion_tokens"]

        streams = 0.0
        for _ in range(3):
            out = [0] * 8
            threads = [threading.Thread(target=one, args=(i, out)) for i in range(8)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            streams = max(streams, sum(out) / (time.perf_counter() - t0))

        words = ("the cat sat on the mat and looked at the little dog who ran " * 40).strip()
        echo, scored = 1e9, 0
        for _ in range(4):
            t0 = time.perf_counter()
            r = post(port, {"prompt": words, "max_tokens": 0, "echo": True, "logprobs": 5})
            echo = min(echo, time.perf_counter() - t0)
            scored = len(r["choices"][0]["logprobs"]["token_logprobs"])
        print(f"{os.path.basename(args.lokal)}, {os.path.basename(args.model)}: 8 streams with "
              f"logprobs {streams:.1f} t/s; echoed prompt of {scored} tokens scored in "
              f"{echo * 1000:.0f} ms")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait()


if __name__ == "__main__":
    main()
