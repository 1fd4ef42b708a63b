#!/usr/bin/env bash
# Soak: the gateway under steady load while faults rotate over its upstreams, reporting the
# gateway's RSS and open file descriptors at the start, every minute, and at the end.
# Not part of CI. Goal: flat memory and descriptors.
#
# Usage: scripts/soak.sh [--minutes N] [--conns C]     (default 10 minutes, 32 connections)
# Installs wrk from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=10; CONNS=32
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MIN=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

WORK=$(mktemp -d /tmp/thr-soak.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; exec 3>&- 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build -q --release -p thr-demo
cargo build -q --release -p thr-gateway
mkfifo "$WORK/faults"
target/release/thr-demo --serve-upstreams --deployments 3 --base-port 18101 < "$WORK/faults" > "$WORK/upstreams.log" 2>&1 & PIDS+=($!)
exec 3>"$WORK/faults"   # keep the fifo open: each line switches a fault

cat > "$WORK/config.yaml" <<YAML
model_list:
$(for i in 1 2 3; do printf '  - model_name: gpt-4o-mini\n    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:%d/v1", api_key: sk-soak-%d }\n    model_info: { id: up-%d, health_check_timeout: 1 }\n' $((18100+i)) "$i" "$i"; done)
general_settings: { background_health_checks: true, health_check_interval: 2, enable_health_check_routing: true }
router_settings: { num_retries: 2, cooldown_time: 3, allowed_fails: 3 }
YAML
RUST_LOG=warn target/release/thr-gateway --config "$WORK/config.yaml" --host 127.0.0.1 --port 18100 --timeout 2 > "$WORK/gateway.log" 2>&1 & PIDS+=($!)
GW=$!
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18100/v1/models && break; sleep 0.1; done
for p in "${PIDS[@]}"; do
  kill -0 "$p" 2>/dev/null || { echo "soak: a process exited at start (ports 18100-18103 busy?):" >&2; cat "$WORK"/*.log >&2; exit 1; }
done

cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA

sample() { printf '%-8s rss_kib=%-8s fds=%s\n' "$1" "$(awk '/VmRSS/ {print $2}' /proc/$GW/status)" "$(ls /proc/$GW/fd | wc -l)"; }
sample start
wrk -t2 -c"$CONNS" -d"${MIN}m" --latency -s "$WORK/post.lua" http://127.0.0.1:18100/v1/chat/completions > "$WORK/wrk.txt" &
WRK=$!
faults=(500 429 reset hang slow flap 401)
end=$(( $(date +%s) + MIN*60 )); n=0
while [ "$(date +%s)" -lt "$end" ]; do
  i=$(( n % 3 + 1 )); f=${faults[$(( n % ${#faults[@]} ))]}
  echo "$i $f" >&3; sleep 10; echo "$i ok" >&3; sleep 5
  n=$((n+1))
  [ $((n % 4)) -eq 0 ] && sample "t+$((n*15))s"
done
wait $WRK || true
sample end
echo; grep -E "Requests/sec|requests in|Non-2xx|Socket errors|50%|99%" "$WORK/wrk.txt"
