# labkit build, test and benchmark entry points. `make` builds the static labinit.
SHELL := /bin/bash
MUSL_TARGET := x86_64-unknown-linux-musl
DIST := dist
# Throwaway roots for tests and benchmarks live outside the clone and are reused.
CACHE ?= /var/cache/labkit
DEBIAN_ROOT := $(CACHE)/debian-12-root
# A real Jupyter (jupyter_server, ipykernel; pinned) for tests/jupyter.rs.
JUPYTER_VENV := $(CACHE)/jupyter-venv

.PHONY: all try labinit labkit labkit-static deps test unit e2e e2e-full fuzz fuzz-ci bench bench-images clean debian-root jupyter-venv

all: labinit labkit

# Static, stripped labinit: musl through rustup, else glibc with +crt-static.
labinit:
	@mkdir -p $(DIST)
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET) >/dev/null 2>&1; then \
	  cargo build --release --locked --no-default-features --bin labinit --target $(MUSL_TARGET) && \
	  cp target/$(MUSL_TARGET)/release/labinit $(DIST)/labinit; \
	else \
	  echo "make: musl target unavailable; building a glibc static labinit instead" >&2; \
	  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --no-default-features --bin labinit --target x86_64-unknown-linux-gnu && \
	  cp target/x86_64-unknown-linux-gnu/release/labinit $(DIST)/labinit; \
	fi
	@file $(DIST)/labinit
	@ls -l $(DIST)/labinit

labkit:
	@mkdir -p $(DIST)
	cargo build --release --locked --bin labkit
	cp target/release/labkit $(DIST)/labkit

# The README's first command: install what is missing, build, make the local
# base, build lab-base (cpu) with podman and run a researcher's job in it,
# stopped with SIGTERM like a deleted pod (tools/try.sh).
try: deps all
	CACHE=$(CACHE) tools/try.sh

# labkit for researchers' laptops and the cluster's login node: one static
# x86_64 Linux binary (musl) that needs nothing installed (README, "labkit job").
labkit-static:
	@mkdir -p $(DIST)
	@rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	cargo build --release --locked --bin labkit --target $(MUSL_TARGET)
	cp target/$(MUSL_TARGET)/release/labkit $(DIST)/labkit-static
	@file $(DIST)/labkit-static
	@file $(DIST)/labkit-static | grep -Eq 'statically linked|static-pie linked' \
	  || { echo "make: $(DIST)/labkit-static is not static" >&2; exit 1; }
	@ls -l $(DIST)/labkit-static

debian-root:
	tests/tools/debian-root.sh $(DEBIAN_ROOT)

jupyter-venv:
	tests/tools/jupyter-venv.sh $(JUPYTER_VENV)

# The one test command (README, .ci/run): the unit, namespace and chroot suites,
# then the end-to-end run in real containers with the whole cpu family (about
# 13 min cold: docs/images.md, "Measured") and the docker engine run, then the fuzzers.
test: deps
	$(MAKE) unit e2e-full fuzz-ci

# Debian packages and the musl target the tests need (installed when missing).
deps:
	LABKIT_TOOLS_DIR=$(CACHE)/tools JUPYTER_VENV=$(JUPYTER_VENV) tests/tools/deps.sh

# Static build first: the tests use it.
unit: labinit debian-root jupyter-venv
	cargo run --locked --quiet --bin labkit -- check
	LABKIT_TEST_LABINIT=$(CURDIR)/$(DIST)/labinit LABKIT_TEST_DEBIAN_ROOT=$(DEBIAN_ROOT) \
	  LABKIT_TEST_KUBERNETES_VALIDATE=$(CACHE)/tools/bin/kubernetes-validate \
	  LABKIT_TEST_JUPYTER=$(JUPYTER_VENV) \
	  cargo test --locked -- --test-threads=2

# End to end (tests/e2e/README.md): lab-base (cpu) built by labkit with podman on a
# debootstrapped Ubuntu 24.04 base, then the lab's job shapes in real containers;
# then lab-base and a child built by labkit with docker, on a dockerd the script
# starts and stops itself (tests/e2e/docker.sh).
e2e: labinit
	E2E_CACHE=$(CACHE) tests/e2e/run.sh
	E2E_CACHE=$(CACHE) tests/e2e/docker.sh

# The whole cpu family from the committed Dockerfiles and locks (lab-pytorch and
# lab-python-ml download ~4 GB from PyPI), every image's tests (`labkit test`),
# researchers' and derived images' pip installs, sizes and install times; then
# the docker engine run of `make e2e`.
e2e-full: labinit
	E2E_FULL=1 E2E_CACHE=$(CACHE) tests/e2e/run.sh
	E2E_CACHE=$(CACHE) tests/e2e/docker.sh

# Fuzz every parser 60 s per target and merge new coverage into fuzz/corpus/ (commit it).
fuzz:
	fuzz/run.sh 60 --merge

# CI-bounded form: 15 s per target; the committed corpus is left alone.
fuzz-ci:
	fuzz/run.sh 15

# Benchmarks against the legacy scripts and other inits (needs hyperfine).
bench: deps labinit debian-root
	tests/bench/run.sh $(DIST)/labinit $(DEBIAN_ROOT)
	$(MAKE) bench-images

# Render time of the whole family and build --jobs against the fake engine.
bench-images:
	cargo test --release --locked --test images_bench -- --ignored --nocapture --test-threads=1

clean:
	cargo clean
	rm -rf $(DIST)
