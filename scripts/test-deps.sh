#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are absent.
# Used by `make check`; safe to run again. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
echo "test-deps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# mosquitto is installed for benchmarks and interop tests only: never leave the
# system service running on the default port.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop mosquitto >/dev/null 2>&1 || true; fi
pkill -x mosquitto >/dev/null 2>&1 || true
