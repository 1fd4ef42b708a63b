#!/usr/bin/env bash
# User-space instructions and mallocs per proxied request of a thr-gateway binary, from
# callgrind (for a shared machine, where wall-clock req/s is noise): an nginx upstream with
# a fixed chat-completion JSON, the gateway (--workers 1, background probes off unless
# PROBES=true) under valgrind with instrumentation off, `wrk -t1 -cCONNS` for 2 s
# uncounted, then instrumentation on for SECS of the same load; the totals are divided by
# the requests wrk reports.
#
# Usage: benches/gateway_callgrind.sh BIN TAG [CONNS=16] [SECS=8]
# Prints `Ir/req=... malloc/req=...`; the callgrind file stays in /tmp/gwcg/TAG.
# Compare two builds in one sitting, alternating (e.g. main's binary and yours). The
# upstream nginx (port 19181) stays up for the next run: kill $(cat /tmp/gwcg/up/nginx.pid).
#
# Optional environment: FALLBACKS=1 adds a second group (`gpt-4o-mini-backup`, same upstream)
# as `router_settings.fallbacks` of the requested one (which still answers: the fallback
# layer's cost when there is a fallback to go to). RETRIES=N sets `router_settings.num_retries`
# (the retry layer's cost when every request succeeds at once). UP_PORT / GW_PORT (19181 / 19183) move the
# upstream and the gateway, for two runs at once on one machine; an upstream on another port
# keeps its files in /tmp/gwcg/up-UP_PORT.
set -euo pipefail
BIN=$1; TAG=$2; C=${3:-16}; SECS=${4:-8}
count() { # dir requests: instructions and malloc-family calls per request (glibc or jemalloc)
  python3 - "$1" "$2" <<'PY'
import sys, glob, re, collections
w, reqs = sys.argv[1], int(sys.argv[2])
files = [f for f in glob.glob(w + '/cg.out*')]
tot = 0; calls = collections.Counter()
JEMALLOC = {'_rjem_malloc': 'malloc', '_rjem_mallocx': 'malloc', '_rjem_calloc': 'calloc',
            '_rjem_realloc': 'realloc', '_rjem_rallocx': 'realloc', '_rjem_free': 'free',
            '_rjem_sdallocx': 'free', '_rjem_dallocx': 'free', '_rjem_posix_memalign': 'posix_memalign',
            '_rjem_aligned_alloc': 'aligned_alloc'}
for f in files:
    names = {}
    cfn = None
    pending = None
    for line in open(f, errors='replace'):
        if line.startswith('summary:') or line.startswith('totals:'):
            if line.startswith('totals:'): tot += int(line.split()[1])
            continue
        m = re.match(r'c?fn=\((\d+)\)(?: (.*))?', line)
        if m:
            i, n = m.group(1), m.group(2)
            if n: names[i] = n.strip()
            if line.startswith('cfn='): cfn = names.get(i)
            continue
        if line.startswith('calls='):
            n = int(line.split('=')[1].split()[0])
            # glibc's names, or jemalloc's (`_rjem_` prefixed: the gateway's default allocator),
            # counted under glibc's.
            name = JEMALLOC.get(cfn, cfn)
            if name in ('malloc', 'realloc', 'calloc', 'free', 'aligned_alloc', 'posix_memalign'):
                calls[name] += n
print(f"files={len(files)} Ir/req={tot/reqs:.0f} " + ' '.join(f"{k}/req={v/reqs:.2f}" for k, v in sorted(calls.items())))
PY
}
W=/tmp/gwcg/$TAG; rm -rf $W; mkdir -p $W/up
UP=${UP_PORT:-19181}; GW=${GW_PORT:-19183}
UPDIR=/tmp/gwcg/up; [ "$UP" = 19181 ] || UPDIR=/tmp/gwcg/up-$UP
if ! curl -s -o /dev/null http://127.0.0.1:$UP/v1/chat/completions; then
REPLY='{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
mkdir -p $UPDIR
cat > $UPDIR/nginx.conf <<CONF
worker_processes 1;
pid $UPDIR/nginx.pid;
error_log $UPDIR/error.log warn;
daemon on;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $UPDIR; proxy_temp_path $UPDIR; fastcgi_temp_path $UPDIR; uwsgi_temp_path $UPDIR; scgi_temp_path $UPDIR;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '$REPLY'; } } }
CONF
/usr/sbin/nginx -c $UPDIR/nginx.conf -p $UPDIR
fi
KEY=sk-bench-0123456789abcdef
EXTRA=""; ROUTER=""; SETTINGS=()
if [ "${FALLBACKS:-0}" = 1 ]; then
EXTRA='  - model_name: gpt-4o-mini-backup
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:'$UP'/v1", api_key: sk-bench }
    model_info: { id: bench-2 }'
SETTINGS+=('fallbacks: [{ gpt-4o-mini: [gpt-4o-mini-backup] }]')
fi
[ -n "${RETRIES:-}" ] && SETTINGS+=("num_retries: $RETRIES")
if [ ${#SETTINGS[@]} -gt 0 ]; then
ROUTER="router_settings: { $(IFS=,; echo "${SETTINGS[*]}") }"
fi
cat > $W/gateway.yaml <<YAML
model_list:
  - model_name: gpt-4o-mini
    litellm_params: { model: openai/gpt-4o-mini, api_base: "http://127.0.0.1:$UP/v1", api_key: sk-bench }
    model_info: { id: bench-1 }
$EXTRA
general_settings: { master_key: "$KEY", background_health_checks: ${PROBES:-false}, health_check_interval: 1, enable_health_check_routing: true }
$ROUTER
YAML
cat > $W/post.lua <<LUA
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$W/cg.out "$BIN" --config $W/gateway.yaml --host 127.0.0.1 --port $GW --workers 1 >$W/gw.log 2>&1 &
VP=$!
for i in $(seq 1 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$GW/v1/chat/completions -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' || true)
  [ "$code" = 200 ] && break; sleep 0.2
done
wrk -t1 -c$C -d2s -s $W/post.lua http://127.0.0.1:$GW/v1/chat/completions >/dev/null
callgrind_control -i on $VP >/dev/null
wrk -t1 -c$C -d${SECS}s -s $W/post.lua http://127.0.0.1:$GW/v1/chat/completions > $W/wrk.txt
sleep 0.5
callgrind_control -i off $VP >/dev/null
callgrind_control -d $VP >/dev/null
kill $VP; wait $VP 2>/dev/null || true
REQS=$(awk '/requests in/ {print $1}' $W/wrk.txt)
NON2XX=$(grep -i "non-2xx" $W/wrk.txt || true)
count $W $REQS
echo "$TAG reqs=$REQS $NON2XX"
