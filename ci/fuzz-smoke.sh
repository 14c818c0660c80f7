#!/usr/bin/env bash
# Fuzz smoke test: every cargo-fuzz target in fuzz/ runs for a bounded time
# (REWIND_FUZZ_SECONDS each, 30 by default) on the nightly toolchain. Any
# crash, panic, timeout or out-of-memory fails the script; the reproducer is
# left in fuzz/artifacts/<target>/ (replay it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

seconds="${REWIND_FUZZ_SECONDS:-30}"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "cargo not found: the fuzz smoke test needs the machine's rustup toolchain" >&2; exit 1; }
# cargo fuzz needs nightly's -Z flags. Use an installed nightly, else try to
# install one, else let the machine's stable toolchain accept them
# (RUSTC_BOOTSTRAP=1): CI machines may not be able to fetch a toolchain.
toolchain=(+nightly)
if ! cargo +nightly --version >/dev/null 2>&1; then
  step "installing the nightly toolchain (cargo fuzz needs it)"
  if ! rustup toolchain install nightly --profile minimal; then
    echo "no nightly toolchain: fuzzing with the stable one and RUSTC_BOOTSTRAP=1" >&2
    toolchain=()
    export RUSTC_BOOTSTRAP=1
  fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# The fuzz crate builds with nightly into fuzz/target; keep a caller's
# CARGO_TARGET_DIR (meant for the stable builds) out of it.
fuzz() { env -u CARGO_TARGET_DIR cargo "${toolchain[@]}" fuzz "$@"; }

step "seed corpus for decode_records"
cargo run --quiet --example fuzz_seeds -- fuzz/corpus/decode_records

step "building the fuzz targets"
fuzz build

failed=()
for target in $(fuzz list); do
  step "fuzzing $target for ${seconds}s"
  if ! fuzz run "$target" -- \
      -max_total_time="$seconds" \
      -timeout=30 \
      -rss_limit_mb=4096 \
      -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
step "fuzz smoke test passed"
