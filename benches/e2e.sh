#!/usr/bin/env bash
# End-to-end cost of a proxy hop, over loopback, all in one run so the ratios hold:
#   (a) direct:  wrk -> nginx upstream (a fixed chat-completion JSON)
#   (b) nginx:   wrk -> nginx reverse proxy -> the same upstream     (the practical floor for a proxy)
#   (c) gateway: wrk -> thr-gateway (health routing on, background probes every second) -> upstream
#   (d) litellm: wrk -> LiteLLM's proxy (same deployment, health routing on)   [only with --litellm]
# at concurrency 1, 16 and 64: requests/s, p50/p99 latency, and CPU time per request of the proxy
# process (utime+stime from /proc, divided by the requests it served). Each target gets one
# uncounted second of the same load before each measured run.
#
# Usage: benches/e2e.sh [--duration SECS] [--conns "1 16 64"] [--litellm] [--base-gateway BIN]
# --base-gateway runs a second thr-gateway binary (e.g. main's build) the same way, as the
# row `gateway-base`, to compare two builds in one run.
# Installs wrk and nginx from Debian's packages when missing; --litellm installs
# 'litellm[proxy]' from PyPI into a throw-away venv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=10; CONNS="1 16 64"; LITELLM=0; BASE_GW=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DUR=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --litellm) LITELLM=1; shift ;;
    --base-gateway) BASE_GW=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/thr-e2e.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null; [ -f "$WORK/px/nginx.pid" ] && kill "$(cat "$WORK/px/nginx.pid")" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

UP=18081; PX=18082; GW=18083; LL=18084; GB=18085
# Both gateways check the same master key (LiteLLM refuses to start without one).
KEY="sk-bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
REPLY='{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'

nginx_conf() { # dir, server block
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<CONF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
daemon on;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
  keepalive_requests 1000000;
  $2
}
CONF
  "$NGINX" -c "$1/nginx.conf" -p "$1"
}

nginx_conf "$WORK/up" "server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '$REPLY'; } }"
nginx_conf "$WORK/px" "upstream up { server 127.0.0.1:$UP; keepalive 128; }
  server { listen 127.0.0.1:$PX; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

cat > "$WORK/gateway.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$UP/v1", api_key: sk-bench }
    model_info: { id: bench-1 }
general_settings: { master_key: "$KEY", background_health_checks: true, health_check_interval: 1, enable_health_check_routing: true }
YAML
cargo build -q --release -p thr-gateway
# One worker thread, like the one nginx worker process it is compared with.
RUST_LOG=warn target/release/thr-gateway --config "$WORK/gateway.yaml" --host 127.0.0.1 --port $GW --workers 1 & PIDS+=($!)
GW_PID=$!
if [ -n "$BASE_GW" ]; then
  RUST_LOG=warn "$BASE_GW" --config "$WORK/gateway.yaml" --host 127.0.0.1 --port $GB --workers 1 & PIDS+=($!)
  GB_PID=$!
fi

if [ "$LITELLM" = 1 ]; then
  VENV=target/litellm-venv
  [ -x "$VENV/bin/litellm" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'litellm[proxy]'; }
  cat > "$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$UP/v1", api_key: sk-bench }
general_settings: { master_key: "$KEY", background_health_checks: true, health_check_interval: 1, enable_health_check_routing: true }
YAML
  "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port $LL > "$WORK/litellm.log" 2>&1 & PIDS+=($!)
  LL_PID=$!
fi

cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA

wait_up() {
  for _ in $(seq 1 900); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/v1/chat/completions" -H "Authorization: Bearer $KEY" \
      -H 'Content-Type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  echo "port $1 never answered 200 (last: $code)" >&2; [ -f "$WORK/litellm.log" ] && tail -20 "$WORK/litellm.log" >&2; return 1
}
wait_up $UP; wait_up $PX; wait_up $GW; [ -n "$BASE_GW" ] && wait_up $GB; [ "$LITELLM" = 1 ] && wait_up $LL

cpu_ticks() { # sum of utime+stime over pids
  local t=0; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t
}
nginx_pids() { local m; m=$(cat "$1/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
HZ=$(getconf CLK_TCK)

printf '\n| target | conns | req/s | p50 | p99 | proxy CPU µs/req |\n|---|---|---|---|---|---|\n'
run() { # name port pids...
  local name=$1 port=$2; shift 2
  for c in $CONNS; do
    # A second of the same load first, not counted: every target is measured warm (its
    # connection pools filled, its caches and the kernel's socket buffers in use), not on
    # its first requests after start-up.
    wrk -t1 -c"$c" -d1s -s "$WORK/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
    local before; before=$(cpu_ticks "$@")
    local out; out=$(wrk -t1 -c"$c" -d"${DUR}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$port/v1/chat/completions")
    local after; after=$(cpu_ticks "$@")
    local rps p50 p99 reqs cpu
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out"); p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    if [ $# -gt 0 ] && [ "${reqs:-0}" -gt 0 ]; then cpu=$(awk -v d=$((after-before)) -v hz="$HZ" -v n="$reqs" 'BEGIN{printf "%.1f", d/hz/n*1e6}'); else cpu="-"; fi
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$c" "$rps" "$p50" "$p99" "$cpu"
  done
}
run direct $UP
run nginx-proxy $PX $(nginx_pids "$WORK/px")
run gateway $GW $GW_PID
[ -n "$BASE_GW" ] && run gateway-base $GB $GB_PID
[ "$LITELLM" = 1 ] && run litellm $LL $(pgrep -P "$LL_PID" | tr '\n' ' ') "$LL_PID"
printf '\nmachine: %s cores, %s; date: %s\n' "$(nproc)" "$(uname -m)" "$(date -u +%F)"
