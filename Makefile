# Unhidra build and test entry points. `make check` is what CI runs.
GO      ?= go
PKGS    := ./...
# Tests that need a system tool (Chromium, mosquitto clients, …) fail instead
# of skipping when this is set.
export UNHIDRA_CHECK := 1
# `make build` builds as `go run` does (the same CGO_ENABLED, so they share
# one build cache); `make cross` builds static, cgo-free binaries.
CROSS   := CGO_ENABLED=0

.PHONY: all build check deps fmt-check vet test test-python soak fuzz cross bench clean

all: build

build:
	$(GO) build -o bin/unhidra ./cmd/unhidra

deps:
	@bash scripts/test-deps.sh
	@$(GO) mod download

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# -race needs cgo. Then the volume tests (named Volume: the audit log's
# tamper trials on 100,000 records, verification speed) at full size
# without -race, under which the embedded SQLite runs twentyfold slower;
# under -race they run on smaller logs.
VOLUME_PKGS := ./internal/audit/...
test: test-python
	CGO_ENABLED=1 UNHIDRA_SCREENSHOTS=$(CURDIR)/build/screenshots $(GO) test -race -count=1 -timeout 20m $(PKGS)
	UNHIDRA_VOLUME=1 $(GO) test -count=1 -timeout 10m -run 'Volume' $(VOLUME_PKGS)

# The ML worker's own tests, on Debian's interpreter (as `serve` runs it).
test-python:
	cd scripts && /usr/bin/python3 -m unittest test_inference_worker

check: deps fmt-check vet test
	@echo "make check: all passed"

# Heavy variants: storms, crash loops, floods (TESTPLAN T2). Without -race,
# so that their timing figures are asserted (make check runs everything under
# -race already).
soak:
	UNHIDRA_SOAK=1 $(GO) test -count=1 -timeout 45m -run 'Soak' $(PKGS)

# The embedded SQLite (modernc.org/libc) has no linux/mipsle port: those
# devices get the agent alone (cmd/unhidra-agent).
# Long fuzzing (TESTPLAN T2): every fuzz target for FUZZTIME (default 30s).
fuzz:
	bash scripts/fuzz.sh

cross:
	@mkdir -p bin
	$(CROSS) GOOS=linux GOARCH=arm GOARM=7 $(GO) build -o bin/unhidra-linux-arm ./cmd/unhidra
	$(CROSS) GOOS=linux GOARCH=arm64 $(GO) build -o bin/unhidra-linux-arm64 ./cmd/unhidra
	$(CROSS) GOOS=linux GOARCH=mipsle GOMIPS=softfloat $(GO) build -o bin/unhidra-agent-linux-mipsle ./cmd/unhidra-agent
	$(CROSS) GOOS=linux GOARCH=riscv64 $(GO) build -o bin/unhidra-linux-riscv64 ./cmd/unhidra

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
