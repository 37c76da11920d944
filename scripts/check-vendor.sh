#!/usr/bin/env bash
# Checks that vendor/tract-nnef is exactly the published crate plus vendor/patches/tract-nnef-<v>.patch
# (vendor/README.md): the crate is taken from cargo's registry cache (fetched from crates.io when it
# is not there), its copied files (Cargo.toml, LICENSE*, src/, stdlib.nnef) are patched, and the
# result must equal the vendored tree byte for byte. An unmarked hand edit of a vendored file fails
# here; a deliberate one goes into the patch (regenerate it with `scripts/check-vendor.sh --write`).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.23.9
patch_file=vendor/patches/tract-nnef-$version.patch
cache="${CARGO_HOME:-$HOME/.cargo}/registry/cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
crate=$(ls "$cache"/*/"tract-nnef-$version.crate" 2>/dev/null | head -1 || true)
if [ -z "$crate" ]; then
  # A throwaway package that depends on the published crate: cargo fetches it into its cache.
  mkdir -p "$tmp/fetch/src"
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ntract-nnef = "=%s"\n' \
    "$version" > "$tmp/fetch/Cargo.toml"
  : > "$tmp/fetch/src/lib.rs"
  cargo fetch -q --manifest-path "$tmp/fetch/Cargo.toml"
  crate=$(ls "$cache"/*/"tract-nnef-$version.crate" | head -1)
fi
tar xzf "$crate" -C "$tmp"
mkdir "$tmp/a"
for f in Cargo.toml LICENSE LICENSE-APACHE LICENSE-MIT src stdlib.nnef; do cp -r "$tmp/tract-nnef-$version/$f" "$tmp/a/"; done
if [ "${1:-}" = --write ]; then
  mkdir "$tmp/b" && cp -r vendor/tract-nnef/. "$tmp/b/"
  (cd "$tmp" && diff -ruN a b || true) | sed -E 's/^(---|\+\+\+) ([^\t]+)\t.*/\1 \2/' > "$patch_file"
  echo "wrote $patch_file"
  exit 0
fi
patch -s -p1 -d "$tmp/a" < "$patch_file"
if ! diff -r "$tmp/a" vendor/tract-nnef; then
  echo "vendor/tract-nnef is not tract-nnef $version + $patch_file: put the change in the patch (scripts/check-vendor.sh --write) or undo it" >&2
  exit 1
fi
echo "vendor/tract-nnef = tract-nnef $version from crates.io + $patch_file"
