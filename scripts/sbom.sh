#!/usr/bin/env bash
# Writes a CycloneDX SBOM (JSON, spec 1.5) of the shipped smtpbind binary:
# the crates linked into `smtpbind` for the target it ships for (the host
# triple, as scripts/build-release.sh builds it), with their versions,
# licences, crates.io checksums and package URLs. Dev-dependencies (tests)
# and build-time-only crates (build scripts, proc-macros) are left out: they
# are not in the binary.
#
#   scripts/sbom.sh [OUT_DIR]      # default target/sbom; prints the file's path
#
# Tool: cargo-cyclonedx, the CycloneDX project's own generator for Cargo
# (OWASP CycloneDX, Apache-2.0), reading `cargo metadata` with Cargo.lock, so
# the SBOM names exactly the locked versions the release build links.
# Installed from crates.io (pinned, --locked) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.5.9
out=${1:-target/sbom}
if ! cargo cyclonedx --version 2>/dev/null | grep -q " $version"; then
  echo "scripts/sbom.sh: cargo install cargo-cyclonedx@$version" >&2
  cargo install --quiet --locked "cargo-cyclonedx@$version" >&2
fi
host=$(rustc -vV | sed -n 's/^host: //p')
cargo cyclonedx --quiet --format json --spec-version 1.5 --describe binaries \
  --no-build-deps --target "$host" >&2
mkdir -p "$out"
dest="$out/smtpbind-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)-$host.cdx.json"
mv smtpbind_bin.cdx.json "$dest"
realpath "$dest"
