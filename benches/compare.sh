#!/usr/bin/env bash
# Routing decision vs peers, in one run (see benches/compare/benches/compare.rs).
# Installs cmake (pingora-core builds zlib-ng with it) when missing.
# Usage: benches/compare.sh [criterion args, e.g. --quick]
set -euo pipefail
cd "$(dirname "$0")/compare"
if ! command -v cmake >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi
cargo bench --target-dir ../../target/compare --bench compare -- "$@"
