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

.PHONY: help deps data rust-targets build test test-rust check-wasm eval calibrate bench demo models

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

deps: data rust-targets ## install everything the build and tests need

data: ## install Fashion-MNIST (Debian package dataset-fashion-mnist) when missing
	@if [ ! -f $(FASHION_MNIST_DIR)/t10k-images-idx3-ubyte.gz ]; then \
	  echo "installing dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

rust-targets: ## add the wasm32 target to the Rust toolchain when missing
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

build: ## build the native CLI (release, no LTO)
	cargo build --release -p hiedge-cli

test: deps test-rust check-wasm ## run all tests
	@echo "make test: all passed"

test-rust: data
	cargo test --workspace

check-wasm: rust-targets ## hiedge-core must build for wasm32-unknown-unknown
	cargo check --target wasm32-unknown-unknown -p hiedge-core

eval: data build ## print the HI trade-off table on the 10,000 test images
	$(HIEDGE) eval

calibrate: data build ## fit the decision module on the calibration set and write it to the manifest
	$(HIEDGE) calibrate

bench: data build ## time both models natively, side by side; writes bench/native.md
	$(HIEDGE) bench --out bench/native.md

demo: eval ## until the Worker and page exist: the eval table

models: data ## retrain both models from scratch (PyTorch on CPU, ~30 min on 2 cores), then calibrate
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r models/train/requirements.txt
	$(VENV)/bin/python models/train/train.py --model all
	$(MAKE) calibrate
