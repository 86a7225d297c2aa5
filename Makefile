# kms-envelope — the commands a new user runs (see README.md).
SHELL := /bin/bash

.PHONY: test demo demo-s3 setup build clean pkg bench fuzz audit

## make test: install what the tests need, then run every test.
test: setup
	scripts/test.sh

## make demo: build the npm package, the web app and the gateway, then start the demo on 127.0.0.1.
demo:
	scripts/setup.sh wasm jstools
	scripts/pkg.sh
	scripts/www.sh
	cargo build --release -p kms-envelope-server
	scripts/demo.sh

## make demo-s3: the same demo with objects in S3 (moto's S3 server on 127.0.0.1): browsers
## upload and download straight to and from the bucket through presigned URLs.
demo-s3:
	scripts/setup.sh wasm jstools python
	scripts/pkg.sh
	scripts/www.sh
	cargo build --release -p kms-envelope-server
	DEMO_STORAGE=s3 scripts/demo.sh

## make setup: install toolchains, Chromium, the Python and Node SDK peers (idempotent).
setup:
	scripts/setup.sh all

## make pkg: build the npm package into pkg/ (npm pack / npm install ./pkg accept it).
pkg:
	scripts/setup.sh wasm jstools
	scripts/pkg.sh

## make bench: kms-envelope against the ceilings and the peers (browser, native, gateway);
## writes bench/results.{json,md} and the README's Performance section.
bench: pkg
	scripts/setup.sh bench
	cargo build --release -p kms-envelope-server --examples --bins
	node scripts/bench.mjs

## make fuzz: run every fuzz target for FUZZ_SECONDS each (default 300); crashes fail it.
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

## make audit: dependency licenses, sources and RustSec advisories (deny.toml).
audit:
	scripts/audit.sh

build:
	cargo build --release --workspace

clean:
	cargo clean
