#!/bin/sh
# Runs the built `lokal serve` binary: raw protocol with curl, then SIGTERM must drain
# and exit 0. Usage: serve_smoke.sh LOKAL_BIN SHARED_DIR
set -eu
BIN=$1
SHARED=$2
LOG=$(mktemp)
PID=
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
fail() { echo "FAIL: $*"; cat "$LOG"; exit 1; }
# Ports below Linux's ephemeral range (32768-60999), so a connection another test has open
# cannot hold ours; a port some other program listens on is retried with the next pick (the
# first pick from the PID collided with a concurrent test's socket once).
for attempt in 1 2 3 4 5; do
  PORT=$((20000 + ($$ + 997 * attempt) % 12000))
  "$BIN" serve --port "$PORT" --models-dir "$SHARED/models" -m stories260K -c 128 -t 1 2>"$LOG" &
  PID=$!
  up=
  for i in $(seq 1 300); do  # up to 30 s: the suite runs tests two at a time
    kill -0 $PID 2>/dev/null || break  # exited: could not listen, or failed
    # (a time limit: on a port another program holds, the request may never be answered)
    if curl -sf --max-time 2 "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
  done
  [ -n "$up" ] && break
  kill $PID 2>/dev/null || true
  wait $PID 2>/dev/null || true
  grep -q 'cannot listen' "$LOG" || fail "the server did not come up on port $PORT"
done
[ -n "$up" ] || fail "no free port after 5 tries"
curl -sfI "http://127.0.0.1:$PORT/" >/dev/null || fail "HEAD /"
out=$(curl -sf "http://127.0.0.1:$PORT/api/generate" -d '{"model":"stories260K","prompt":"Once","raw":true,"options":{"num_predict":4,"temperature":0}}')
echo "$out" | tail -n 1 | grep -q '"done":true' || fail "generate: $out"
out=$(curl -sf -N "http://127.0.0.1:$PORT/v1/completions" -d '{"model":"stories260K","prompt":"Once","max_tokens":3,"stream":true}')
echo "$out" | tail -n 2 | grep -q 'data: \[DONE\]' || fail "SSE: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/chat" -d '{bad')
[ "$code" = 400 ] || fail "malformed JSON gave $code"
# The request log is one JSON line per request even when the path holds a quote and a
# newline (it was printf'd: this path wrote a second, forged line).
curl -s -o /dev/null "http://127.0.0.1:$PORT/api/blobs/x%22%0Aforged" || true
grep -q '^forged' "$LOG" && fail "a request path forged a log line"
grep -q '"path":"/api/blobs/x\\"\\nforged"' "$LOG" || fail "the escaped path is not in the log"
kill -TERM $PID
wait $PID || fail "exit status $? after SIGTERM"
trap - EXIT
rm -f "$LOG"
echo ok
