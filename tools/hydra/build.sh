#!/usr/bin/env bash
# Builds Ory Hydra v2.3.0, the third-party OpenID provider of the end-to-end
# tests (../../../shared/REAL-IDP.md in the workspace; README "Tests"), once,
# into a cache outside the repository, and prints the binary's path. Hydra
# lives in this separate module so that it never enters oidcgate's go.mod.
# The binary is keyed by the hash of this module's go.sum: a change of
# version or replace directive builds a new one.
set -euo pipefail
cd "$(dirname "$0")"
cache="${OIDCGATE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/oidcgate}"
key=$(sha256sum go.mod go.sum | sha256sum | cut -c1-16)
bin="$cache/hydra-v2.3.0-$key"
if [ ! -x "$bin" ]; then
	mkdir -p "$cache"
	# -tags sqlite: Hydra refuses DSN=memory without it.
	CGO_ENABLED=1 go build -trimpath -tags sqlite,sqlite_omit_load_extension \
		-o "$bin.tmp.$$" github.com/ory/hydra/v2 >&2
	mv "$bin.tmp.$$" "$bin"
fi
echo "$bin"
