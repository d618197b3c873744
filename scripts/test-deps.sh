#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are absent.
# Used by `make check`; safe to run again. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The ML worker runs on Debian's interpreter with numpy available.
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || need+=(python3-numpy)

# node and npm: wscat, and libolm for client/e2ee's interop tests.
{ command -v node && command -v npm; } >/dev/null 2>&1 || need+=(nodejs npm)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ]; then
	echo "test-deps: installing ${need[*]}"
	$SUDO apt-get update -qq >/dev/null
	$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	# mosquitto is installed for benchmarks and interop tests only: never
	# leave the system service running on the default port.
	if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop mosquitto >/dev/null 2>&1 || true; fi
	if [ -f /run/mosquitto/mosquitto.pid ]; then $SUDO kill "$(cat /run/mosquitto/mosquitto.pid)" >/dev/null 2>&1 || true; fi
fi

# wscat: the seed's own WebSocket check (`wscat -c "ws://…/ws?token=<JWT>"`),
# run by the end-to-end tests as a real third-party client.
if ! command -v wscat >/dev/null 2>&1; then
	echo "test-deps: installing wscat (npm)"
	$SUDO npm install -g --no-fund --no-audit wscat@6.1.0 >/dev/null
fi

# libolm, the reference Olm/Megolm implementation (compiled to WebAssembly),
# for client/e2ee's interop tests; they look for it in this same directory
# (or in UNHIDRA_OLM_DIR).
olm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/unhidra-olm"
if [ ! -f "$olm_dir/node_modules/@matrix-org/olm/package.json" ] ||
	! grep -q '"version": "3.2.15"' "$olm_dir/node_modules/@matrix-org/olm/package.json"; then
	echo "test-deps: installing @matrix-org/olm@3.2.15 (npm) in $olm_dir"
	npm install --prefix "$olm_dir" --no-fund --no-audit --no-save @matrix-org/olm@3.2.15 >/dev/null
fi
