#!/usr/bin/env bash
# Builds smtpbind as it ships (the Docker image, bench/run.sh): the release
# profile, linked statically against glibc (`-C target-feature=+crt-static`),
# for the host's own target triple. Prints the binary's path.
#
# Why static: the sidecar's idle RSS is mostly code pages, and a dynamic build
# maps all of ld.so, libc, libm and libgcc_s (about 1.9 MiB resident once
# touched) where a static one carries only what it calls; the image needs no
# libc either (distroless/static). Names still resolve: glibc 2.34+ has the
# `files` and `dns` NSS sources built in, which is all /etc/nsswitch.conf names
# in a container (checked by tests/e2e/static-build.sh with a DNS server).
#
# `--target` keeps RUSTFLAGS off build scripts and proc-macros (which cannot be
# static); the binary lands in target/<triple>/release/, next to the ordinary
# dynamic build in target/release/ that `cargo test` and `cargo run` use.
# Linux only (crt-static is a glibc/musl feature).
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --quiet --bin smtpbind --target "$host"
echo "$PWD/target/$host/release/smtpbind"
