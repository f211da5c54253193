# Thin wrapper over ./dev, which installs or asks for system packages.
.PHONY: cluster test test-long build fmt lint

cluster:
	./dev cluster

test:
	./dev test

test-long:
	./dev test-long

build:
	./dev build

fmt:
	cargo fmt --all

lint:
	cargo clippy --all-targets -- -D warnings
