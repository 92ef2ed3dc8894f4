# keel - the commands a newcomer uses.  CMake does the real build.
#
#   make run     install missing packages, build, start keeld on 127.0.0.1:8080
#   make test    install missing packages, build (-Werror), run every test + a short fuzz run
#   make asan    the test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz    libFuzzer on every target (FUZZ_SECONDS each, default 60)
#   make bench   benchmarks under bench/ (http.sh: wrk vs nginx; store.sh: store vs raw engine APIs)

BUILD        ?= build
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
SMOKE_FUZZ_SECONDS ?= 10
CMAKE_FLAGS  ?=

.PHONY: all deps build run test asan fuzz fuzz-build bench install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DKEEL_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@mkdir -p var logs
	exec ./$(BUILD)/keeld

# Tests run against real PostgreSQL and Redis servers that scripts/with-services.sh starts
# (and stops) for the run; nothing is skipped.
test: build
	scripts/with-services.sh sh -c 'cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300'
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(SMOKE_FUZZ_SECONDS)

asan: deps
	@cmake -S . -B build-asan -DKEEL_WERROR=ON -DKEEL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build-asan -j $(JOBS)
	scripts/with-services.sh sh -c 'cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 600'

fuzz-build: deps
	@CC=clang cmake -S . -B build-fuzz -DKEEL_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

fuzz: fuzz-build
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

bench: build
	@scripts/deps.sh bench
	bench/http.sh
	bench/users_me.sh
	bench/store.sh
	bench/policy.sh
	bench/pay.sh

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-fuzz
