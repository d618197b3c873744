#!/usr/bin/env bash
# Runs every native fuzz target of the module for FUZZTIME each (default 30s).
# New crashers are written by `go test` to the package's testdata/fuzz and
# then run as regression cases by every `go test`. Exits non-zero on the
# first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-30s}"
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
	pkg="./$(dirname "${file#./}")"
	for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
		echo "fuzz: $pkg $name ($fuzztime)"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/unhidra-fuzz.$$ 2>&1 || {
			cat /tmp/unhidra-fuzz.$$; rm -f /tmp/unhidra-fuzz.$$; exit 1; }
	done
done
rm -f /tmp/unhidra-fuzz.$$
echo "fuzz: every target ran for $fuzztime without a failure"
