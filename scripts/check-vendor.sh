#!/usr/bin/env bash
# vendor/tract-nnef is the published crate plus the patch series vendor/patches/tract-nnef-<v>/*.patch,
# applied in name order (vendor/README.md). The crate comes from cargo's registry cache (fetched from
# crates.io when it is not there); its copied files (Cargo.toml, LICENSE*, src/, stdlib.nnef) are
# patched in a scratch directory.
#
#   scripts/check-vendor.sh            fails unless the result equals vendor/tract-nnef byte for
#                                      byte (make lint): a vendored line changed by hand fails
#   scripts/check-vendor.sh --apply    rewrites vendor/tract-nnef from the crate + the series
#                                      (after a new version or a changed patch)
#   scripts/check-vendor.sh --new NAME writes what vendor/tract-nnef has beyond the series as the
#                                      next patch, NNNN-NAME.patch (review it, add its rationale)
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.23.9
series=vendor/patches/tract-nnef-$version
vendored=vendor/tract-nnef
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
shopt -s nullglob
patches=("$series"/*.patch)
for p in "${patches[@]}"; do
  patch -s -p1 --no-backup-if-mismatch -d "$tmp/a" < "$p" || { echo "$p does not apply to tract-nnef $version" >&2; exit 1; }
done

case "${1:-}" in
  --apply)
    rm -rf "$vendored" && mkdir -p "$vendored" && cp -r "$tmp/a/." "$vendored/"
    echo "wrote $vendored: tract-nnef $version + ${#patches[@]} patches of $series"
    ;;
  --new)
    name=${2:?usage: scripts/check-vendor.sh --new NAME}
    next=$(printf '%04d' $(( ${#patches[@]} + 1 )))
    out="$series/$next-$name.patch"
    mkdir "$tmp/b" && cp -r "$vendored/." "$tmp/b/"
    { printf 'Subject: [PATCH] %s\n\n(why, in a few lines)\n\n' "$name"
      (cd "$tmp" && diff -ruN a b || true) | sed -E 's/^(---|\+\+\+) ([^\t]+)\t.*/\1 \2/'; } > "$out"
    echo "wrote $out"
    ;;
  "")
    if ! diff -r "$tmp/a" "$vendored"; then
      echo "$vendored is not tract-nnef $version + the patches of $series: put the change in a patch" \
        "(scripts/check-vendor.sh --new NAME) or undo it (scripts/check-vendor.sh --apply)" >&2
      exit 1
    fi
    echo "$vendored = tract-nnef $version from crates.io + ${#patches[@]} patches of $series"
    ;;
  *) echo "usage: scripts/check-vendor.sh [--apply | --new NAME]" >&2; exit 2 ;;
esac
