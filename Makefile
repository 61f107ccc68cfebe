# portcullis - the two commands a user needs are `make demo` and `make test`.
#
#   make            build both daemons (build/)
#   make check      unit tests, plain and under ASan+UBSan (fast loop)
#   make test       install what is missing, build, unit + sanitizer + fuzz-corpus, the
#                   fresh-root check, end-to-end
#   make fresh-root scripts/deps.sh + check + fuzz-replay on a fresh minimal Debian root
#   make fuzz       run every libFuzzer target for FUZZ_SECONDS each
#   make bench      benchmarks (bench/), numbers printed, nothing asserted
#   make demo       a local cluster, authd, Envoy, Keycloak and a protected echo app
#   make images     build the two images with buildah

BUILD       ?= build
ASAN_BUILD  ?= build-asan
FUZZ_BUILD  ?= build-fuzz
JOBS        ?= 2
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

.PHONY: all build check unit asan fuzz-replay fuzz fresh-root e2e test deps bench demo images clean format

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

unit: build
	cd $(BUILD) && ctest -L unit --output-on-failure

asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPORTCULLIS_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest -L unit --output-on-failure

check: unit asan

fuzz-replay:
	scripts/fuzz.sh replay $(FUZZ_BUILD)

fuzz:
	scripts/fuzz.sh run $(FUZZ_BUILD) $(FUZZ_SECONDS)

deps:
	scripts/deps.sh

# The install steps proved on a root that has nothing installed (docs/testing.md);
# PORTCULLIS_SKIP_FRESH_ROOT=1 skips it.
fresh-root:
	JOBS=$(JOBS) scripts/fresh-root.sh

e2e: build
	scripts/e2e.sh $(BUILD)

test: deps
	$(MAKE) check
	$(MAKE) fuzz-replay
	$(MAKE) fresh-root
	$(MAKE) e2e

bench: deps build
	bench/run.sh $(BUILD)

demo: deps build
	scripts/demo.sh $(BUILD)

images:
	PORTCULLIS_IMAGES=1 PORTCULLIS_DEPS_TOOLS=0 scripts/deps.sh
	scripts/images.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
