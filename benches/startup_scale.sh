#!/usr/bin/env bash
# Start-up at scale: thr-gateway loads a LiteLLM config.yaml of N deployments (default
# 100,000, in groups of 100 per model_name), then routes a chat completion to a local
# upstream. Reports the time from exec to the first 200 answer, the config size, and the
# gateway's resident memory (VmRSS after the first answer, VmHWM = its peak).
# Background health checks are off here (a probe round over 100,000 deployments is
# benches/probe_scale.sh's subject); health-check routing is on.
# Usage: [STYLE=flow|hand] benches/startup_scale.sh [N] [PER_GROUP]
# STYLE=flow (the default): one line per mapping, `{ model: openai/gpt-4o-mini, ... }`, as a
# generator writes them. STYLE=hand: the usual hand-written style, nested block mappings
# of Azure deployments (`azure/gpt-4o`, `api_version`, `rpm`, `model_info.mode`), the keys of
# 64 Azure resources, each group spread over them in turn; forwarded to `/openai/deployments/gpt-4o/chat/
# completions?api-version=...` on the local upstream, which answers any path.
# THR_GATEWAY=<binary> runs that build instead of building and running target/release's
# (to compare two builds on the same config).
# Needs: nginx (apt-get install -y nginx) for the upstream, curl, a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}; PER=${2:-100}; STYLE=${STYLE:-flow}
case "$STYLE" in flow|hand) ;; *) echo "STYLE is flow or hand, not $STYLE" >&2; exit 2 ;; esac
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is needed: apt-get install -y nginx" >&2; exit 2; }
GW_BIN=${THR_GATEWAY:-target/release/thr-gateway}
[ -n "${THR_GATEWAY:-}" ] || cargo build -q --release -p thr-gateway
WORK=$(mktemp -d /tmp/thr-startup.XXXXXX)
GW_PID=""
cleanup() {
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null || true
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
UP=18181; GW=18183
KEY="sk-startup-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
REPLY='{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
mkdir -p "$WORK/up"
cat > "$WORK/up/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
daemon on;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/up; proxy_temp_path $WORK/up; fastcgi_temp_path $WORK/up; uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '$REPLY'; } }
}
CONF
"$NGINX" -c "$WORK/up/nginx.conf" -p "$WORK/up"
python3 - "$N" "$PER" "$UP" "$KEY" "$STYLE" > "$WORK/config.yaml" <<'PY'
import sys
n, per, up, key, style = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
out = ["model_list:"]
for i in range(n):
    if style == "hand":
        out.append(f"  - model_name: group-{i // per}\n"
                   f"    litellm_params:\n"
                   f"      model: azure/gpt-4o\n"
                   f"      api_base: http://127.0.0.1:{up}\n"
                   f"      api_key: az-key-{i % 64:02d}\n"
                   f"      api_version: \"2024-10-21\"\n"
                   f"      rpm: 1000\n"
                   f"    model_info:\n"
                   f"      id: dep-{i}\n"
                   f"      mode: chat")
        continue
    out.append(f"  - model_name: group-{i // per}\n"
               f"    litellm_params: {{ model: openai/gpt-4o-mini, api_base: \"http://127.0.0.1:{up}/v1\", api_key: sk-upstream-{i % 7} }}\n"
               f"    model_info: {{ id: dep-{i} }}")
out.append(f"general_settings: {{ master_key: \"{key}\", background_health_checks: false, enable_health_check_routing: true }}")
print("\n".join(out))
PY
size=$(du -h "$WORK/config.yaml" | cut -f1)
start=$(date +%s.%N)
RUST_LOG=warn "$GW_BIN" --config "$WORK/config.yaml" --host 127.0.0.1 --port $GW --workers 1 > "$WORK/gw.log" 2>&1 & GW_PID=$!
last=$(( N / PER - 1 ))
# Wait for the listening socket without spawning a process per try (a curl every few
# milliseconds would take a core from the gateway's two start-up threads): a bash
# /dev/tcp connect, then curl until the first routed 200.
mkfifo "$WORK/never"; exec 9<>"$WORK/never"   # read -t on it: a sleep without a process
for _ in $(seq 1 30000); do
  { exec 3<>"/dev/tcp/127.0.0.1/$GW"; } 2>/dev/null && { exec 3>&-; break; }
  kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway exited:" >&2; tail -20 "$WORK/gw.log" >&2; exit 1; }
  read -rt 0.002 -u 9 || true
done
code=000
for _ in $(seq 1 6000); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW/v1/chat/completions" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "{\"model\":\"group-$last\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" 2>/dev/null || true)
  [ "$code" = 200 ] && break
  kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway exited:" >&2; tail -20 "$WORK/gw.log" >&2; exit 1; }
  sleep 0.005
done
end=$(date +%s.%N)
[ "$code" = 200 ] || { echo "no 200 answer (last: $code)" >&2; tail -20 "$WORK/gw.log" >&2; exit 1; }
rss=$(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$GW_PID/status")
hwm=$(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$GW_PID/status")
printf 'deployments: %d in %d groups (%s style, config %s)\nexec to first 200: %.3f s\nRSS after: %s; peak RSS: %s\nmachine: %s cores, load %s; date: %s\n' \
  "$N" $(( N / PER )) "$STYLE" "$size" "$(echo "$end - $start" | bc)" "$rss" "$hwm" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%F)"
