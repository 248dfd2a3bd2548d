#!/bin/sh
# bench/run.sh: the full benchmark in one run (about 3-5 minutes on 2 cores).
# Installs what it needs, builds oidcgate and the bench program, and writes
# bench/RESULTS.md and bench/results.png. Extra arguments go to the bench
# program, e.g. `bench/run.sh -quick` for a smoke run or `-pin=false`.
set -eu
cd "$(dirname "$0")/.."

# Binaries are cached here between runs.
BIN="${OIDCGATE_BENCH_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/oidcgate-bench}"
mkdir -p "$BIN"
BIN="$(cd "$BIN" && pwd)"

apt_install() {
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && apt-get install -y -qq "$@"
	else
		sudo apt-get update -qq && sudo apt-get install -y -qq "$@"
	fi
}
command -v wrk >/dev/null 2>&1 || apt_install wrk
# Optional: without redis-server the Redis revocation test is skipped.
command -v redis-server >/dev/null 2>&1 || apt_install redis-server || true
# Optional: without nginx the forward-auth contenders are skipped.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx-light || true

O2P_VERSION=v7.15.6
if ! { [ -x "$BIN/oauth2-proxy" ] && go version -m "$BIN/oauth2-proxy" | grep -q "oauth2-proxy/v7[[:space:]]*$O2P_VERSION"; }; then
	echo "installing oauth2-proxy $O2P_VERSION into $BIN ..."
	GOBIN="$BIN" go install "github.com/oauth2-proxy/oauth2-proxy/v7@$O2P_VERSION"
fi

go build -o "$BIN/oidcgate" ./cmd/oidcgate
# bench is a module of its own (bench/go.mod): gonum/plot stays out of
# oidcgate's module.
go build -C bench -o "$BIN/bench" .

OIDCGATE_BENCH_COMMAND="$(echo "bench/run.sh $*" | sed "s/ *$//")" exec "$BIN/bench" \
	-oidcgate "$BIN/oidcgate" -oauth2-proxy "$BIN/oauth2-proxy" -out bench "$@"
