#!/usr/bin/env bash
# Probe-round scale: rounds over 100, 1,000 and 10,000 deployments at concurrency 500
# against an upstream answering after 20 ms, vs the ideal ceil(N / 500) x 20 ms; and
# LiteLLM's /health (an on-demand round, health_check_concurrency 500) on 100 and 1,000
# deployments of the same upstream, with --litellm (installs 'litellm[proxy]' into a venv).
# Usage: benches/probe_scale.sh [--litellm]
set -euo pipefail
cd "$(dirname "$0")/.."
for n in 100 1000 10000; do
  PROBE_ROUND_N=$n PROBE_ROUND_ROUNDS=3 PROBE_ROUND_NO_PICKS=1 cargo bench -q --bench probe_round 2>/dev/null \
    | grep -E "^probe_round|round time|peak rss" | sed "s/^/[ours N=$n] /"
done
[ "${1:-}" = "--litellm" ] || exit 0

VENV=target/litellm-venv
[ -x "$VENV/bin/litellm" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q 'litellm[proxy]'; }
BIN=$(ls -t target/release/deps/probe_round-* | grep -v '\.d$' | head -1)
WORK=$(mktemp -d /tmp/thr-scale.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
PROBE_ROUND_BENCH_SERVER=1 "$BIN" > "$WORK/addr" & PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$WORK/addr" ] && break; sleep 0.1; done
ADDR=$(head -1 "$WORK/addr")
KEY="sk-scale-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
for n in 100 1000; do
  {
    echo "model_list:"
    for i in $(seq 1 "$n"); do
      printf '  - model_name: m%d\n    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://%s/v1", api_key: sk-x }\n    model_info: { id: d%d }\n' "$i" "$ADDR" "$i"
    done
    echo "general_settings: { master_key: \"$KEY\", health_check_concurrency: 500 }"
  } > "$WORK/litellm-$n.yaml"
  "$VENV/bin/litellm" --config "$WORK/litellm-$n.yaml" --host 127.0.0.1 --port 18090 > "$WORK/litellm-$n.log" 2>&1 & LL=$!
  for _ in $(seq 1 1200); do curl -s -o /dev/null http://127.0.0.1:18090/health/liveliness && break; sleep 0.1; done
  for r in 1 2 3; do
    out=$(curl -s -o "$WORK/health.json" -w '%{http_code} %{time_total}' -H "Authorization: Bearer $KEY" http://127.0.0.1:18090/health)
    healthy=$(python3 -c "import json,sys; d=json.load(open('$WORK/health.json')); print(d.get('healthy_count'), d.get('unhealthy_count'))" 2>/dev/null || echo "? ?")
    ideal=$(awk -v n="$n" 'BEGIN { printf "%.3f", int((n + 499) / 500) * 0.020 }')
    echo "[litellm N=$n] /health round $r: status ${out% *}, ${out#* } s (ideal $ideal s), healthy/unhealthy $healthy"
  done
  kill "$LL"; wait "$LL" 2>/dev/null || true
done
