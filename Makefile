# Swisted: the two commands a new machine needs.
#   make demo   installs libuv1-dev and pkg-config if missing, builds, runs the poetry demo
#               (the echo demo: Examples/echo/demo.sh .build/debug)
#   make test   same install step, then the whole test suite
#   make bench  the benchmarks (Benchmarks/), writing Benchmarks/RESULTS.md
#   make soak   a mixed load against one echo server for SOAK_SECONDS (default 45), then
#               checks that it ends as it began (Tools/README.md); SOAK_SECONDS=5 for a smoke run
#   make check  the whole test suite under AddressSanitizer (with LeakSanitizer),
#               then under ThreadSanitizer; fails on any sanitizer report
#               (make check SANITIZERS=address: ASan only; SANITIZERS=thread: TSan only)
#   make fuzz   libFuzzer targets for the framing receivers and address parsing (Fuzz/),
#               FUZZ_SECONDS each (default 30); fails on any crash or broken invariant
SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: deps build demo test check bench bench-quick soak fuzz clean

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

# The suite under AddressSanitizer (LeakSanitizer on: any leak fails the run),
# then under ThreadSanitizer, each in its own scratch directory so the normal
# .build stays as it is. A run fails if the tests fail, if the test process
# exits non-zero (ASan aborts at its first report, LSan exits 23 and TSan 66
# at exit when they reported anything) or if the output has any sanitizer
# report at all (child processes, e.g. swisted-netns-check, report there too).
# Suppressions: Tests/lsan-suppressions.txt, Foundation only, each with its reason.
# XCTest is off (--disable-xctest): the suite is Swift Testing only, and an
# empty XCTest run leaks XCTest's own objects; the guard fails if XCTest tests appear.
# SANITIZERS=address runs only the first (CI does, see .ci/run).
SANITIZERS ?= address thread
SANITIZER_REPORT := ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|SUMMARY: (Address|Leak|Thread|UndefinedBehavior)Sanitizer
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan-suppressions.txt:print_suppressions=0
TSAN_ENV := TSAN_OPTIONS=halt_on_error=0:exitcode=66

check: deps
	@if grep -rlqs '^import XCTest' Tests; then \
		echo "make check: XCTest tests found; run them under the sanitizers too (drop --disable-xctest)"; exit 1; fi
	@set -e; for sanitizer in $(SANITIZERS); do \
		case $$sanitizer in \
			address) dir=.build-asan; env="$(ASAN_ENV)" ;; \
			thread) dir=.build-tsan; env="$(TSAN_ENV)" ;; \
			*) echo "make check: unknown sanitizer '$$sanitizer' (address, thread)"; exit 2 ;; \
		esac; \
		echo "$(SWIFT) build --build-tests --sanitize=$$sanitizer --scratch-path $$dir"; \
		$(SWIFT) build --build-tests --sanitize=$$sanitizer --scratch-path $$dir; \
		echo "$$env $(SWIFT) test --skip-build --disable-xctest --sanitize=$$sanitizer --scratch-path $$dir"; \
		{ env $$env $(SWIFT) test --skip-build --disable-xctest --sanitize=$$sanitizer --scratch-path $$dir; \
			echo $$? > $$dir/check.status; } 2>&1 | tee $$dir/check.log; \
		if grep -Eq '$(SANITIZER_REPORT)' $$dir/check.log; then \
			echo "make check: $$sanitizer sanitizer report(s) above (log: $$dir/check.log)"; exit 1; fi; \
		status=$$(cat $$dir/check.status); if [ "$$status" != 0 ]; then \
			echo "make check: swift test under the $$sanitizer sanitizer exited $$status (log: $$dir/check.log)"; exit 1; fi; \
		echo "make check: $$sanitizer sanitizer run clean"; \
	done

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
	rm -rf .build .build-asan .build-tsan
