# Swisted: the two commands a new machine needs.
#   make demo   installs libuv1-dev and pkg-config if missing, builds, runs the poetry demo
#               (the echo demo: Examples/echo/demo.sh .build/debug)
#   make test   same install step, then the whole test suite
#   make bench  the benchmarks (Benchmarks/), writing Benchmarks/RESULTS.md
#   make soak   a mixed load against one echo server for SOAK_SECONDS (default 45), then
#               checks that it ends as it began (Tools/README.md); SOAK_SECONDS=5 for a smoke run
#   make fuzz   libFuzzer targets for the framing receivers and address parsing (Fuzz/),
#               FUZZ_SECONDS each (default 30); fails on any crash or broken invariant
SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: deps build demo test bench bench-quick soak fuzz clean

# Quiet when everything is there; apt-get only for what is missing.
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists libuv; then \
		echo "Installing libuv1-dev and pkg-config..."; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libuv1-dev pkg-config >/dev/null; \
	fi

build: deps
	$(SWIFT) build

demo: build
	@Examples/poetry/demo.sh .build/debug

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test

# Swisted vs raw libuv C vs SwiftNIO, side by side (see Benchmarks/README.md).
bench: deps
	$(MAKE) -C Benchmarks bench

bench-quick: deps
	$(MAKE) -C Benchmarks bench-quick

# Release build (what users run); SOAK_CONFIG=debug runs the server with its assertions on.
SOAK_CONFIG ?= release
soak: deps
	$(SWIFT) build -c $(SOAK_CONFIG) --product soak-server
	$(SWIFT) build -c $(SOAK_CONFIG) --product soak-driver
	.build/$(SOAK_CONFIG)/soak-driver .build/$(SOAK_CONFIG)/soak-server

# Builds with swiftc -sanitize=fuzzer,address into .build-fuzz/ (see Fuzz/run.sh).
FUZZ_SECONDS ?= 30
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) Fuzz/run.sh

clean:
	rm -rf .build
