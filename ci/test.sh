#!/usr/bin/env bash
# Everything CI checks, in order: formatting, lints, the README's test command,
# a longer soak of the model-based engine test, a short run of every fuzz
# target (ci/fuzz-smoke.sh; REWIND_FUZZ_SECONDS each), then the end-to-end
# test with the real Linux NVMe/TCP host in a QEMU guest (ci/e2e.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# The machine's Rust toolchain comes from rustup; make sure cargo is on PATH
# and the components we use are present.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "cargo not found: this CI needs the machine's rustup toolchain" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

step "cargo test (the README's test command)"
cargo test

step "model-based engine soak"
PROPTEST_CASES="${REWIND_SOAK_CASES:-3000}" cargo test --test engine_model

step "fuzz smoke test"
ci/fuzz-smoke.sh

step "end to end: the Linux NVMe/TCP host against rewind serve (QEMU)"
REWIND_E2E_TARGET=rewind ci/e2e.sh

step "all checks passed"
