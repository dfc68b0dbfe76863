// The chat page at GET / (see server.cpp): static HTML and JavaScript compiled into the
// binary, no external resources, talking to the server's own /api/tags and /api/chat.
// Text from models and users only ever reaches the page as textContent (never HTML).
#include "server/server_impl.h"

namespace lokal::server {

const char* const kChatPageHtml = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lokal chat</title>
<style>
  :root { color-scheme: light dark; --line: #8884; --accent: #3a6ff7; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, sans-serif; display: flex; flex-direction: column;
         height: 100vh; }
  header, footer { display: flex; gap: .75em; align-items: center; padding: .6em 1em;
                   border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  footer { border-top: 1px solid var(--line); border-bottom: 0; }
  header h1 { font-size: 1.05em; margin: 0 1em 0 0; }
  label { display: flex; gap: .35em; align-items: center; }
  #messages { flex: 1; overflow-y: auto; padding: 1em; display: flex; flex-direction: column;
              gap: .6em; }
  .msg { max-width: 80ch; padding: .5em .8em; border-radius: .6em; white-space: pre-wrap;
         border: 1px solid var(--line); }
  .user { align-self: flex-end; background: #3a6ff722; }
  .assistant { align-self: flex-start; }
  .assistant[data-done="false"]::after { content: "\258D"; opacity: .6; }
  .error { border-color: #d33; color: #d33; }
  .note { font-size: .85em; opacity: .7; }
  textarea { flex: 1; min-height: 2.6em; font: inherit; padding: .4em; resize: vertical; }
  input[type=number] { width: 5em; }
  button { font: inherit; padding: .4em 1em; }
  #send { background: var(--accent); color: #fff; border: 0; border-radius: .3em; }
  button:disabled { opacity: .5; }
</style>
</head>
<body>
<header>
  <h1>lokal</h1>
  <label>Model <select id="model"></select></label>
  <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.8"></label>
  <label>Max tokens <input id="max-tokens" type="number" min="1" step="1" value="256"></label>
  <label id="key-label" hidden>API key <input id="api-key" type="password" autocomplete="off"></label>
  <button id="clear" type="button">New chat</button>
  <span id="status" class="note"></span>
</header>
<main id="messages" aria-live="polite"></main>
<footer>
  <textarea id="input" placeholder="Send a message (Enter sends, Shift+Enter adds a line)"></textarea>
  <button id="send" type="button">Send</button>
  <button id="stop" type="button" disabled>Stop</button>
</footer>
<script src="/chat.js"></script>
</body>
</html>
)HTML";

const char* const kChatPageJs = R"JS('use strict';
// State: the conversation so far (sent back whole with every turn) and the running request.
const $ = id => document.getElementById(id);
let history = [];
let controller = null;

function setStatus(text) { $('status').textContent = text; }

// A server started with --api-key answers 401 until the key is given: the page asks for it
// once and keeps it for this tab only (sessionStorage), sending it as a Bearer token.
function authHeaders(extra) {
  const key = sessionStorage.getItem('lokal-api-key') || '';
  return key ? { ...extra, Authorization: 'Bearer ' + key } : { ...extra };
}
function needKey() {
  $('key-label').hidden = false;
  $('api-key').focus();
  setStatus('this server needs an API key (lokal serve --api-key): enter it above');
}

function bubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  div.textContent = text;
  $('messages').appendChild(div);
  div.scrollIntoView({ block: 'end' });
  return div;
}

async function loadModels() {
  try {
    const r = await fetch('/api/tags', { headers: authHeaders({}) });
    if (r.status === 401) { needKey(); return; }
    if (!r.ok) throw new Error((await r.json()).error || r.statusText);
    const { models } = await r.json();
    const sel = $('model');
    sel.replaceChildren();
    for (const m of models) {
      const o = document.createElement('option');
      o.value = o.textContent = m.name;
      sel.appendChild(o);
    }
    setStatus(models.length ? '' : 'no models: start lokal serve with --models-dir or pull one');
  } catch (e) {
    setStatus('cannot list models: ' + e.message);
  }
}

// Reads NDJSON objects from a fetch body as they arrive.
async function* ndjson(body) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buf.trim()) yield JSON.parse(buf);
}

function busy(on) {
  $('send').disabled = on;
  $('stop').disabled = !on;
}

async function send() {
  const text = $('input').value.trim();
  const model = $('model').value;
  if (!text || controller) return;
  if (!model) { setStatus('pick a model first'); return; }
  $('input').value = '';
  bubble('user', text);
  history.push({ role: 'user', content: text });
  const out = bubble('assistant', '');
  out.dataset.done = 'false';
  out.dataset.chunks = '0';
  controller = new AbortController();
  busy(true);
  let reply = '';
  const options = { temperature: Number($('temperature').value) };
  const maxTokens = Number($('max-tokens').value);
  if (maxTokens > 0) options.num_predict = maxTokens;
  try {
    const r = await fetch('/api/chat', {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json' }),
      body: JSON.stringify({ model, messages: history, stream: true, options }),
      signal: controller.signal,
    });
    if (r.status === 401) needKey();
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    for await (const part of ndjson(r.body)) {
      if (part.error) throw new Error(part.error);
      const piece = part.message?.content ?? '';
      if (piece) {
        reply += piece;
        out.textContent = reply;
        out.dataset.chunks = String(Number(out.dataset.chunks) + 1);
        out.scrollIntoView({ block: 'end' });
      }
      if (part.done) {
        const secs = (part.eval_duration || 0) / 1e9;
        setStatus(part.eval_count + ' tokens' +
                  (secs > 0 ? ', ' + (part.eval_count / secs).toFixed(1) + ' tokens/s' : ''));
      }
    }
  } catch (e) {
    if (e.name === 'AbortError') {
      out.dataset.stopped = 'true';
      setStatus('stopped');
    } else {
      out.classList.add('error');
      out.textContent = reply + (reply ? '\n' : '') + 'error: ' + e.message;
    }
  } finally {
    // A stopped reply stays in the conversation as far as it got.
    if (reply) history.push({ role: 'assistant', content: reply });
    out.dataset.done = 'true';
    controller = null;
    busy(false);
  }
}

$('api-key').addEventListener('change', () => {
  sessionStorage.setItem('lokal-api-key', $('api-key').value);
  loadModels();
});
$('send').addEventListener('click', send);
$('stop').addEventListener('click', () => controller?.abort());
$('clear').addEventListener('click', () => {
  controller?.abort();
  history = [];
  $('messages').replaceChildren();
  setStatus('');
});
$('input').addEventListener('keydown', e => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); }
});
loadModels();
)JS";

}  // namespace lokal::server
