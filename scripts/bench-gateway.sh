#!/usr/bin/env bash
# exoclaw's OpenAI-compatible gateway (`exoclaw gateway`, /v1) against the LiteLLM proxy, side by
# side in one run, both in front of the same instant upstream: an nginx on this machine that answers
# every chat request with a fixed chat.completion (JSON) or a fixed SSE stream. wrk posts chat
# requests to nginx directly (the baseline), through a second nginx as a plain reverse proxy (the
# floor: what one process hop costs on this machine, whoever makes it), through exoclaw and through
# LiteLLM; client, proxies and upstream share the cores, as in the issue's measurements. Prints req/s, p50, p99, the latency each
# proxy adds over nginx direct, the ratio exoclaw/LiteLLM, idle and loaded RSS, and whether exoclaw
# meets the issue's targets (non-streaming and streaming alike): ≥ 20,000 req/s at 8 connections,
# added latency ≤ 0.1 ms p50 at 1 connection and ≤ 1 ms p99 at 8, idle gateway RSS ≤ 15 MB.
# Everything listens on 127.0.0.1, on free ports; nothing reaches another address.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/bench-gateway.sh [--skip-litellm] [--only exoclaw|litellm|nginx] [--seconds N] [--rounds N]

Benchmarks exoclaw's /v1 gateway and the LiteLLM proxy in front of the same instant nginx upstream
with wrk: for each target × {non-streaming, streaming} × {1 connection/1 thread, 8 connections/
2 threads}, a warm-up, then a measured run. nginx direct is always measured: the added-latency
columns and exoclaw's targets are relative to it. So is nginx-proxy, a second nginx (one worker,
keep-alive upstream connections) that only passes requests through: the least any proxy adds
here, since the client's request now wakes two processes instead of one.

A shared machine's speed drifts from one minute to the next, so nginx direct, nginx-proxy and
exoclaw are measured back to back, one after the other, for each mode and connection count, and
that --rounds times over: the table shows each target's median over the rounds, and the added
latency is the median of the per-round differences (the target minus the nginx direct run of the
same round). LiteLLM, four hundred times slower, is measured once.

Options:
  --skip-litellm     do not install or run LiteLLM (a quick run)
  --only TARGET      measure only TARGET (exoclaw, litellm or nginx) besides nginx direct and
                     nginx-proxy
  --seconds N        length of each measured run (default: $BENCH_SECONDS or 10)
  --rounds N         rounds of nginx/nginx-proxy/exoclaw per mode and connection count
                     (default: $BENCH_ROUNDS or 3)
  -h, --help         this text

Environment:
  BENCH_SECONDS      length of each measured run, in seconds (default 10)
  BENCH_ROUNDS       rounds of nginx/nginx-proxy/exoclaw per mode and connection count (default 3)
  BENCH_WARMUP       length of each warm-up run, in seconds (default 2)
  BENCH_KEEP=1       keep the work folder (configs, server logs, raw wrk output)
  EXOCLAW_BIN=PATH   bench this exoclaw binary instead of building target/release/exoclaw

Installs what is missing: nginx and wrk (apt-get, scripts/peers/nginx.sh), LiteLLM (PyPI, into
its own venv, scripts/peers/litellm.sh); builds exoclaw (cargo build --release -p exoclaw-cli).
Exit status: 0 when every run completed without errors (whether or not targets are met), 1 when a
step failed or any run had errors (non-2xx responses, socket errors, a failed sanity check).
EOF
}

seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-3}
warmup=${BENCH_WARMUP:-2}
run_exoclaw=1; run_litellm=1
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --skip-litellm) run_litellm=0 ;;
    --only)
      [ $# -ge 2 ] || { echo "--only needs a target: exoclaw, litellm or nginx" >&2; exit 2; }
      case "$2" in
        exoclaw) run_litellm=0 ;;
        litellm) run_exoclaw=0 ;;
        nginx) run_exoclaw=0; run_litellm=0 ;;
        *) echo "--only: unknown target '$2' (exoclaw, litellm or nginx)" >&2; exit 2 ;;
      esac
      shift ;;
    --seconds)
      [ $# -ge 2 ] || { echo "--seconds needs a number" >&2; exit 2; }
      seconds=$2; shift ;;
    --rounds)
      [ $# -ge 2 ] || { echo "--rounds needs a number" >&2; exit 2; }
      rounds=$2; shift ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "the run length must be a whole number of seconds, not '$seconds'" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "the number of rounds must be a whole number ≥ 1, not '$rounds'" >&2; exit 2; }
[[ "$warmup" =~ ^[0-9]+$ ]] || { echo "BENCH_WARMUP must be a whole number of seconds, not '$warmup'" >&2; exit 2; }

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench-gateway: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Processes: every server runs in its own session so that cleanup ends it with all its children
# (LiteLLM's workers) and nothing else.
work=$(mktemp -d -t exoclaw-bench-gateway.XXXXXX)
pids=()
cleanup() {
  local status=$? pid
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "work folder kept: $work" >&2
  else
    rm -rf "$work"
    [ "$status" -eq 0 ] || echo "(BENCH_KEEP=1 keeps the configs and logs)" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: runs CMD in the background, in a session of its own; sets $started.
start() {
  local name=$1 log=$2; shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  started=$!
  pids+=("$started")
  say "started $name (pid $started, log $log)"
}

log_tail() { echo "--- last lines of $1:" >&2; tail -n "${2:-30}" "$1" >&2 || true; echo "---" >&2; }

# wait_http NAME PID LOG URL SECONDS: waits until URL answers 2xx; fails with the server's log tail
# when the server exits or the time runs out.
wait_http() {
  local name=$1 pid=$2 log=$3 url=$4 limit=$5 i
  for i in $(seq 1 $((limit * 10))); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then log_tail "$log"; die "$name exited before answering $url"; fi
    sleep 0.1
  done
  log_tail "$log"; die "$name did not answer $url within ${limit}s"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# RSS of a process and all its descendants, in kB (summed: LiteLLM is a tree of processes).
tree_pids() { local p; echo "$1"; for p in $(pgrep -P "$1" || true); do tree_pids "$p"; done; }
rss_kb() {
  local total=0 p kb
  for p in $(tree_pids "$1"); do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}
nprocs() { tree_pids "$1" | wc -l; }

# ---------------------------------------------------------------------------------------------
# The upstream's fixed answers, in OpenAI's chat completions wire format: a chat.completion object,
# and a stream of chat.completion.chunk events (role, content pieces, finish_reason "stop", a usage
# chunk with empty choices, as with stream_options.include_usage) ending in `data: [DONE]`.
# No single quotes, dollar signs or backslashes: they are embedded in nginx's config as is.
ANSWER="Hi! How can I help you today?"
json_body='{"id":"chatcmpl-bench0000000000000000000001","object":"chat.completion","created":1741569952,"model":"gpt-bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hi! How can I help you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_bench"}'
chunk() {
  printf 'data: {"id":"chatcmpl-bench0000000000000000000002","object":"chat.completion.chunk","created":1741569952,"model":"gpt-bench","service_tier":"default","system_fingerprint":"fp_bench","choices":[%s],"usage":%s}\n\n' "$1" "$2"
}
sse_body=$(
  chunk '{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}' null
  for piece in 'Hi!' ' How can' ' I help' ' you today?'; do
    chunk "{\"index\":0,\"delta\":{\"content\":\"$piece\"},\"logprobs\":null,\"finish_reason\":null}" null
  done
  chunk '{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}' null
  chunk '' '{"prompt_tokens":9,"completion_tokens":10,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}'
  printf 'data: [DONE]\n\n.'
)
sse_body=${sse_body%.}   # keep the trailing blank line that $(…) would strip
models_body='{"object":"list","data":[{"id":"gpt-bench","object":"model","created":1741569952,"owned_by":"bench"}]}'

# ---------------------------------------------------------------------------------------------
say "peers"
nginx_bin=$(bash scripts/peers/nginx.sh)
litellm_bin=""
if [ "$run_litellm" = 1 ]; then litellm_bin=$(bash scripts/peers/litellm.sh); fi
exoclaw_bin=${EXOCLAW_BIN:-target/release/exoclaw}
if [ "$run_exoclaw" = 1 ]; then
  if [ -z "${EXOCLAW_BIN:-}" ]; then
    say "building exoclaw (release)"
    cargo build --release -p exoclaw-cli --locked || die "cargo build failed"
  fi
  "$exoclaw_bin" gateway --help >/dev/null 2>&1 || die "$exoclaw_bin has no working 'gateway' command"
fi

# ---------------------------------------------------------------------------------------------
# start_nginx NAME PORT HTTP_BLOCKS: an nginx of its own under $work/NAME (one worker, no access
# log, keep-alive connections that are never recycled during a run) serving HTTP_BLOCKS (its
# `server`, and any `upstream`); checks the config, starts it and waits until PORT answers.
# Sets $started.
start_nginx() {
  local name=$1 port=$2 blocks=$3 dir=$work/$1
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
$blocks
}
EOF
  "$nginx_bin" -t -q -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" 2>"$dir/test.log" \
    || { log_tail "$dir/test.log"; die "nginx rejected the config of $name ($dir/nginx.conf)"; }
  start "$name" "$dir/out.log" "$nginx_bin" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf"
  wait_http "$name" "$started" "$dir/error.log" "http://127.0.0.1:$port/json/v1/models" 10
}

# nginx: the instant upstream.
nginx_port=$(free_port)
start_nginx nginx "$nginx_port" "  server {
    listen 127.0.0.1:$nginx_port;
    location = /json/v1/chat/completions { types { } default_type application/json; return 200 '$json_body'; }
    location = /sse/v1/chat/completions { types { } default_type text/event-stream; return 200 '$sse_body'; }
    location ~ ^/(json|sse)/v1/models\$ { types { } default_type application/json; return 200 '$models_body'; }
    location / { types { } default_type application/json; return 404 '{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}'; }
  }"
nginx_pid=$started
upstream="http://127.0.0.1:$nginx_port"

# nginx-proxy: a second nginx, one worker, that passes every request to the upstream over
# keep-alive connections and the answer back, changing nothing. No proxy can add less than it.
proxy_port=$(free_port)
start_nginx nginx-proxy "$proxy_port" "  upstream instant { server 127.0.0.1:$nginx_port; keepalive 32; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$proxy_port;
    location / {
      proxy_pass http://instant;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
proxy_pid=$started
proxy_url="http://127.0.0.1:$proxy_port"

# ---------------------------------------------------------------------------------------------
# exoclaw gateway: two providers on the same nginx, one answering JSON and one SSE.
exoclaw_url=""; exoclaw_pid=""
if [ "$run_exoclaw" = 1 ]; then
  exoclaw_port=$(free_port)
  mkdir -p "$work/exoclaw/home"
  cat >"$work/exoclaw/config.toml" <<EOF
[providers.fixed]
kind = "openai"
base_url = "$upstream/json/v1"
api_key = "sk-bench"

[providers.fixedsse]
kind = "openai"
base_url = "$upstream/sse/v1"
api_key = "sk-bench"
EOF
  EXOCLAW_CONFIG="$work/exoclaw/config.toml" EXOCLAW_HOME="$work/exoclaw/home" \
    start exoclaw "$work/exoclaw/log" "$exoclaw_bin" gateway --bind "127.0.0.1:$exoclaw_port"
  exoclaw_pid=$started
  exoclaw_url="http://127.0.0.1:$exoclaw_port"
  wait_http "exoclaw gateway" "$exoclaw_pid" "$work/exoclaw/log" "$exoclaw_url/healthz" 30
fi

# ---------------------------------------------------------------------------------------------
# LiteLLM proxy: the same two routes, two uvicorn workers. Nothing may leave the machine: the model
# cost map is read from the package instead of GitHub, telemetry is off, and any HTTP(S) client that
# would still reach out is pointed at a closed loopback port (loopback itself bypasses it).
# uvicorn kills a worker that misses its health ping for 5 s, which LiteLLM's workers do while they
# import on a busy 2-core machine (and then they restart over and over): the ping gets 120 s.
litellm_url=""; litellm_pid=""
if [ "$run_litellm" = 1 ]; then
  litellm_port=$(free_port)
  mkdir -p "$work/litellm"
  cat >"$work/litellm/config.yaml" <<EOF
model_list:
  - model_name: gpt-bench
    litellm_params:
      model: openai/gpt-bench
      api_base: $upstream/json/v1
      api_key: sk-bench
  - model_name: gpt-bench-sse
    litellm_params:
      model: openai/gpt-bench
      api_base: $upstream/sse/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
general_settings:
  # Like exoclaw's gateway on loopback with no tokens: no client authentication, no database.
  dangerously_permit_weak_or_unset_master_key: true
EOF
  closed=$(free_port)
  LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False \
    HTTP_PROXY="http://127.0.0.1:$closed" HTTPS_PROXY="http://127.0.0.1:$closed" \
    http_proxy="http://127.0.0.1:$closed" https_proxy="http://127.0.0.1:$closed" \
    NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
    start litellm "$work/litellm/log" "$litellm_bin" --config "$work/litellm/config.yaml" \
      --host 127.0.0.1 --port "$litellm_port" --num_workers 2 --telemetry False \
      --timeout_worker_healthcheck 120
  litellm_pid=$started
  litellm_url="http://127.0.0.1:$litellm_port"
  wait_http litellm "$litellm_pid" "$work/litellm/log" "$litellm_url/health/liveliness" 240
  # The port answers once the first worker is up; the second is still importing (seconds of CPU
  # that would disturb the other runs) until it logs its startup too.
  for i in $(seq 1 240); do
    [ "$(grep -c 'Application startup complete' "$work/litellm/log")" -ge 2 ] && break
    kill -0 "$litellm_pid" 2>/dev/null || { log_tail "$work/litellm/log"; die "litellm exited during its startup"; }
    [ "$i" = 240 ] && { log_tail "$work/litellm/log"; die "litellm's second worker did not start within 240s"; }
    sleep 1
  done
fi

# ---------------------------------------------------------------------------------------------
# Idle memory, once every server is up and before any load.
sleep 2
results="$work/results.tsv"; : >"$results"
memory="$work/memory.tsv"; : >"$memory"
record_rss() {  # TARGET PID WHEN
  printf '%s\t%s\t%s\t%s\n' "$1" "$3" "$(rss_kb "$2")" "$(nprocs "$2")" >>"$memory"
}
if [ -n "$exoclaw_pid" ]; then record_rss exoclaw "$exoclaw_pid" idle; fi
if [ -n "$litellm_pid" ]; then record_rss litellm "$litellm_pid" idle; fi

# ---------------------------------------------------------------------------------------------
# wrk: POSTs one chat request body over and over; done() prints one parseable line. errors.status
# is wrk's count of responses with a status ≥ 400; the socket errors (connect, read, write,
# timeout) come with it. Per-response checks in Lua would slow wrk down: the sanity request
# before each target checks the status and the body instead.
cat >"$work/chat.lua" <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

body_for() {  # MODEL MODE (json or sse)
  if [ "$2" = sse ]; then
    printf '{"model":"%s","messages":[{"role":"user","content":"Say hi"}],"stream":true}' "$1"
  else
    printf '{"model":"%s","messages":[{"role":"user","content":"Say hi"}]}' "$1"
  fi
}

failures=0
# A single request through the target first: it must answer 200 with the upstream's answer, or the
# numbers would measure an error path.
sanity() {  # TARGET MODE URL BODY LOG
  local out="$work/sanity-$1-$2" code
  code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 30 -H 'Content-Type: application/json' \
    -d "$4" "$3" 2>>"$out.err") || code="curl failed: $(tail -n 1 "$out.err")"
  local ok=0
  if [ "$code" = 200 ]; then
    if [ "$2" = json ]; then grep -qF "$ANSWER" "$out" && ok=1
    else grep -qF 'data: [DONE]' "$out" && grep -qF 'today?' "$out" && grep -q '"finish_reason": *"stop"' "$out" && ok=1
    fi
  fi
  if [ "$ok" = 1 ]; then return 0; fi
  echo "!! $1 $2: the sanity request got '$code' or an unexpected body:" >&2
  head -c 600 "$out" >&2 || true; echo >&2
  if [ -n "$5" ]; then log_tail "$5" 20; fi
  failures=$((failures + 1))
  return 1
}

# measure TARGET MODE CONNS ROUND URL BODY: a warm-up, then one measured wrk run; appends its line to
# the results and prints it.
measure() {
  local target=$1 mode=$2 conns=$3 round=$4 url=$5 body=$6 threads line raw
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  raw="$work/wrk-$target-$mode-$conns-$round.txt"
  if [ "$warmup" -gt 0 ]; then
    BENCH_BODY=$body wrk -t"$threads" -c"$conns" -d"${warmup}s" -s "$work/chat.lua" "$url" >/dev/null 2>&1 || true
  fi
  if ! BENCH_BODY=$body wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency -s "$work/chat.lua" "$url" >"$raw" 2>&1; then
    cat "$raw" >&2; die "wrk failed against $target ($url)"
  fi
  line=$(grep '^BENCH' "$raw" | tail -n 1) || { cat "$raw" >&2; die "wrk printed no result for $target"; }
  line=${line#BENCH$'\t'}
  printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$mode" "$conns" "$round" "$line" >>"$results"
  local rps p50 p99 n e_connect e_read e_write e_status e_timeout note=""
  IFS=$'\t' read -r rps p50 p99 n e_connect e_read e_write e_status e_timeout <<<"$line"
  if [ $((e_connect + e_read + e_write + e_status + e_timeout)) -gt 0 ]; then
    note="  !! errors: status>=400 $e_status, connect $e_connect, read $e_read, write $e_write, timeout $e_timeout (of $n)"
  fi
  awk -v t="$target" -v m="$mode" -v c="$conns" -v k="$round" -v r="$rps" -v a="$p50" -v b="$p99" -v note="$note" \
    'BEGIN { printf "   round %s  %-11s %-4s c=%s %10.1f req/s  p50 %8.3f ms  p99 %8.3f ms%s\n", k, t, m, c, r, a / 1000, b / 1000, note }' >&2
}

# Which targets get measured: each one's chat URL and model per mode, and its log; a target whose
# sanity request fails in a mode is dropped from that mode's runs (and reported FAILED).
declare -A chat_of model_of log_of usable
targets=(nginx nginx-proxy)
for mode in json sse; do
  chat_of[nginx,$mode]=$upstream/$mode/v1/chat/completions; model_of[nginx,$mode]=gpt-bench
  chat_of[nginx-proxy,$mode]=$proxy_url/$mode/v1/chat/completions; model_of[nginx-proxy,$mode]=gpt-bench
done
log_of[nginx]=""; log_of[nginx-proxy]=$work/nginx-proxy/error.log
if [ -n "$exoclaw_url" ]; then
  targets+=(exoclaw)
  chat_of[exoclaw,json]=$exoclaw_url/v1/chat/completions; chat_of[exoclaw,sse]=$exoclaw_url/v1/chat/completions
  model_of[exoclaw,json]=fixed/gpt-bench; model_of[exoclaw,sse]=fixedsse/gpt-bench
  log_of[exoclaw]=$work/exoclaw/log
fi
if [ -n "$litellm_url" ]; then
  targets+=(litellm)
  chat_of[litellm,json]=$litellm_url/v1/chat/completions; chat_of[litellm,sse]=$litellm_url/v1/chat/completions
  model_of[litellm,json]=gpt-bench; model_of[litellm,sse]=gpt-bench-sse
  log_of[litellm]=$work/litellm/log
fi
# run TARGET MODE CONNS ROUND: one measured run of TARGET, if usable in MODE.
run() {
  [ -n "${usable[$1,$2]:-}" ] || return 0
  measure "$1" "$2" "$3" "$4" "${chat_of[$1,$2]}" "$(body_for "${model_of[$1,$2]}" "$2")"
}
for mode in json sse; do
  for target in "${targets[@]}"; do
    if sanity "$target" "$mode" "${chat_of[$target,$mode]}" "$(body_for "${model_of[$target,$mode]}" "$mode")" "${log_of[$target]}"; then
      usable[$target,$mode]=1
    else
      for conns in 1 8; do printf '%s\t%s\t%s\t0\tFAILED\n' "$target" "$mode" "$conns" >>"$results"; done
    fi
  done
done

say "load: ${seconds}s per run after a ${warmup}s warm-up; nginx direct, nginx-proxy and exoclaw in $rounds round(s)"
for mode in json sse; do
  for conns in 1 8; do
    for round in $(seq 1 "$rounds"); do
      run nginx "$mode" "$conns" "$round"
      run nginx-proxy "$mode" "$conns" "$round"
      run exoclaw "$mode" "$conns" "$round"
    done
  done
done
if [ -n "$exoclaw_pid" ]; then record_rss exoclaw "$exoclaw_pid" loaded; fi
if [ -n "$litellm_pid" ]; then
  for mode in json sse; do
    for conns in 1 8; do run litellm "$mode" "$conns" 1; done
  done
  record_rss litellm "$litellm_pid" loaded
fi
for pid in "$nginx_pid" "$proxy_pid" $exoclaw_pid $litellm_pid; do
  kill -0 "$pid" 2>/dev/null || { failures=$((failures + 1)); echo "!! process $pid exited during the load" >&2; }
done

# ---------------------------------------------------------------------------------------------
# The table, memory and the targets; exits 1 when a run had errors.
python3 - "$results" "$memory" "$seconds" "$(nproc)" "$rounds" <<'PY' || table_failed=1
import statistics, sys
results_file, memory_file, seconds, cpus, rounds = sys.argv[1:6]
runs, failed, mem = {}, set(), {}
for line in open(results_file):
    f = line.rstrip("\n").split("\t")
    target, mode, conns, rnd = f[0], f[1], int(f[2]), int(f[3])
    if f[4] == "FAILED":
        failed.add((target, mode, conns))
        continue
    rps, p50, p99, n, *errs = float(f[4]), int(f[5]), int(f[6]), int(f[7]), *map(int, f[8:13])
    runs.setdefault((target, mode, conns), {})[rnd] = dict(
        rps=rps, p50=p50 / 1000, p99=p99 / 1000, n=n, errors=sum(errs),
        detail=dict(zip(["connect", "read", "write", "status>=400", "timeout"], errs)))
for line in open(memory_file):
    target, when, kb, procs = line.split("\t")
    mem[target, when] = (int(kb) / 1024, int(procs))

def median(values):
    return statistics.median(values) if values else None

# One row per target, mode and connection count: medians over its rounds, errors summed.
rows = {}
for key, by_round in runs.items():
    rs = list(by_round.values())
    rows[key] = dict(rps=median([r["rps"] for r in rs]), p50=median([r["p50"] for r in rs]),
                     p99=median([r["p99"] for r in rs]), rps_min=min(r["rps"] for r in rs),
                     rps_max=max(r["rps"] for r in rs), rounds=len(rs), n=sum(r["n"] for r in rs),
                     errors=sum(r["errors"] for r in rs),
                     detail={k: sum(r["detail"][k] for r in rs) for k in rs[0]["detail"]})
for key in failed:
    rows[key] = None

def added(target, mode, conns, field):
    """The median of the per-round differences to nginx direct (the run of the same round), or,
    for a target measured in fewer rounds than nginx (LiteLLM), its value minus nginx's median."""
    mine, base = runs.get((target, mode, conns)), runs.get(("nginx", mode, conns))
    if not mine or not base:
        return None
    paired = [mine[k][field] - base[k][field] for k in mine if k in base]
    if target in ("exoclaw", "nginx-proxy") and paired:
        return median(paired)
    return median([r[field] for r in mine.values()]) - median([r[field] for r in base.values()])

modes = {"json": "non-streaming", "sse": "streaming"}
print(f"\nexoclaw gateway vs LiteLLM proxy, instant nginx upstream; {seconds}s per run, {cpus} CPUs shared by wrk, proxy and upstream")
print(f"(nginx direct, nginx-proxy and exoclaw: medians over {rounds} round(s) run back to back, req/s range in brackets;")
print(" added = p50/p99 minus nginx direct's, the median of the per-round differences; ×litellm = exoclaw req/s / LiteLLM req/s)\n")
hdr = f"{'target':<12}{'mode':<15}{'conns':>5}{'req/s':>11}{'(range)':>19}{'p50 ms':>9}{'p99 ms':>9}{'added p50':>11}{'added p99':>11}{'×litellm':>10}  errors"
print(hdr); print("-" * len(hdr))
flagged = []
for target in ["nginx", "nginx-proxy", "exoclaw", "litellm"]:
    for mode in ["json", "sse"]:
        for conns in [1, 8]:
            key = (target, mode, conns)
            if key not in rows:
                continue
            r = rows[key]
            if r is None:
                print(f"{target:<12}{modes[mode]:<15}{conns:>5}  FAILED (sanity request did not get the upstream's answer)")
                flagged.append(key); continue
            spread = f"[{r['rps_min']:,.0f}–{r['rps_max']:,.0f}]" if r["rounds"] > 1 else ""
            a50, a99 = added(target, mode, conns, "p50"), added(target, mode, conns, "p99")
            add50 = f"{a50:+.3f}" if a50 is not None and target != "nginx" else ""
            add99 = f"{a99:+.3f}" if a99 is not None and target != "nginx" else ""
            ratio = ""
            lite = rows.get(("litellm", mode, conns))
            if target == "exoclaw" and lite and lite["rps"] > 0:
                x = r["rps"] / lite["rps"]
                ratio = f"{x:.1f}×" if x < 10 else f"{x:.0f}×"
            err = "0" if r["errors"] == 0 else "!! " + ", ".join(f"{k} {v}" for k, v in r["detail"].items() if v) + f" of {r['n']}"
            if r["errors"]:
                flagged.append(key)
            print(f"{target:<12}{modes[mode]:<15}{conns:>5}{r['rps']:>11.1f}{spread:>19}{r['p50']:>9.3f}{r['p99']:>9.3f}{add50:>11}{add99:>11}{ratio:>10}  {err}")

print("\nmemory (RSS summed over the process tree)")
for target in ["exoclaw", "litellm"]:
    if (target, "idle") in mem:
        idle, procs = mem[target, "idle"]
        loaded = mem.get((target, "loaded"))
        after = f", after the load {loaded[0]:.1f} MB" if loaded else ""
        print(f"  {target:<8} idle {idle:.1f} MB ({procs} process{'es' if procs > 1 else ''}){after}")

if any(t == "exoclaw" for t, _, _ in rows):
    print("\nexoclaw against the issue's targets")
    def check(label, values, limit, better, fmt):
        parts, ok_all = [], True
        for mode, value in values:
            if value is None:
                parts.append(f"{modes[mode]} not measured or had errors"); ok_all = False; continue
            ok = value >= limit if better == "higher" else value <= limit
            ok_all &= ok
            parts.append(f"{modes[mode]} {fmt.format(value)} {'ok' if ok else 'MISSED'}")
        print(f"  {label:<34} {'PASS' if ok_all else 'FAIL'}   ({'; '.join(parts)})")
    def get(mode, conns, value):
        r = rows.get(("exoclaw", mode, conns))
        if not r or r["errors"]:
            return None
        return value(mode, conns, r)
    check("req/s at 8 conns ≥ 20,000", [(m, get(m, 8, lambda m, c, r: r["rps"])) for m in modes], 20000, "higher", "{:,.0f} req/s")
    check("added p50 at 1 conn ≤ 0.1 ms", [(m, get(m, 1, lambda m, c, r: added("exoclaw", m, c, "p50"))) for m in modes], 0.1, "lower", "{:+.3f} ms")
    check("added p99 at 8 conns ≤ 1 ms", [(m, get(m, 8, lambda m, c, r: added("exoclaw", m, c, "p99"))) for m in modes], 1.0, "lower", "{:+.3f} ms")
    idle = mem.get(("exoclaw", "idle"))
    if idle:
        print(f"  {'idle RSS ≤ 15 MB':<34} {'PASS' if idle[0] <= 15 else 'FAIL'}   ({idle[0]:.1f} MB)")
    floor = [(m, added("nginx-proxy", m, 1, "p50"), added("exoclaw", m, 1, "p50")) for m in modes]
    if all(f is not None and e is not None for _, f, e in floor):
        print("  the floor at 1 conn: a plain nginx reverse proxy adds "
              + "; ".join(f"{modes[m]} {f:+.3f} ms" for m, f, _ in floor)
              + " (exoclaw beyond it: " + "; ".join(f"{e - f:+.3f}" for _, f, e in floor) + ")")

if flagged:
    print("\n!! runs with errors: " + ", ".join(f"{t} {modes[m]} c={c}" for t, m, c in flagged) + " — their numbers are not valid")
    sys.exit(1)
PY
[ "$failures" -eq 0 ] && [ "${table_failed:-0}" = 0 ] || exit 1
