#!/usr/bin/env bash
# What the routing layer's per-request bookkeeping costs, part by part: builds the
# allocation bench (`benches/allocs`) from a throw-away worktree of HEAD with
# `benches/layer_knockouts.patch` applied (measurement only: runtime switches that turn
# off one part each), then counts instructions per request under callgrind for each
# knock-out, as the difference of two run lengths (THR_SPIN 20000 - 10000, so start-up
# cancels), minus the inner service alone (`THR_MODE=bare`).
#
# Knock-outs (bits of THR_KNOCKOUT): 1 the request's `SelectedDeployment` extension,
# 2 the in-flight count, 4 the success count, 8 the decision metrics, 16 the response's
# classification and recording; 31 all of them (what is left is the decision and the
# service/future plumbing). None of these is a configuration a user can choose: each
# breaks a promise (the extension, `/health`'s in-flight, least-busy, p2c, the
# failure-ratio cooldown, the metrics).
#
# Usage: benches/layer_knockouts.sh [N=8]   (needs valgrind; about 3 minutes)
# WALL=1 also runs the criterion layer bench (`layer/bare`, `layer/routed/N`) once per
# knock-out, alternating twice: wall clock, noisy on a shared machine.
#
# The patch is against the source it was written for; when `git apply` fails, the layer's
# code has moved: re-cut the patch (the switches are a dozen lines).
set -euo pipefail
command -v valgrind >/dev/null || { echo "layer_knockouts.sh: needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
N=${1:-8}
ROOT=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
WT=$(mktemp -d /tmp/thr-knockouts.XXXXXX)
trap 'git -C "$ROOT" worktree remove --force "$WT" >/dev/null 2>&1 || true' EXIT
git -C "$ROOT" worktree add --detach --force "$WT" HEAD >/dev/null
git -C "$WT" apply "$ROOT/benches/layer_knockouts.patch"
TGT=${KNOCKOUT_TARGET_DIR:-/tmp/thr-knockouts-target}
(cd "$WT/benches/allocs" && cargo build --release --quiet --target-dir "$TGT")
BIN=$TGT/release/thr-allocs
ir() { # mode knockout spin -> instructions
  THR_KNOCKOUT=$2 THR_MODE=$1 THR_SPIN=$3 THR_N=$N \
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per() { echo $(( ($(ir "$1" "$2" 20000) - $(ir "$1" "$2" 10000)) / 10000 )); }
bare=$(per bare 0)
echo "N=$N: the inner service alone: $bare instructions per request"
printf '%-42s %s\n' "knocked out" "instructions per request over the inner service"
for k in 0 1 2 4 8 16 31; do
  case $k in
    0) what="nothing (the layer as shipped, + the switches)" ;;
    1) what="the request's SelectedDeployment extension" ;;
    2) what="the in-flight count" ;;
    4) what="the success count" ;;
    8) what="the decision metrics" ;;
    16) what="the response's classification/recording" ;;
    31) what="all of the above" ;;
  esac
  printf '%-42s %s\n' "$what" $(( $(per routed $k) - bare ))
done
if [ "${WALL:-0}" = 1 ]; then
  (cd "$WT" && cargo bench --bench routing --no-run --quiet --target-dir "$TGT" 2>/dev/null)
  RB=$(ls -t "$TGT"/release/deps/routing-* | grep -v '\.d$' | head -1)
  for round in 1 2; do
    for k in 0 1 2 4 8 16 31; do
      printf 'round %s, THR_KNOCKOUT=%-2s ' "$round" "$k"
      THR_KNOCKOUT=$k "$RB" --bench "layer/(bare|routed/$N)\$" 2>&1 |
        awk '/time:/ {name = ($1 ~ /^layer/) ? $1 : prev; sub(/.*time: *\[[^ ]+ [^ ]+ /, ""); printf "%s %s %s  ", name, $1, $2}
             {prev = $1}'
      echo
    done
  done
fi
