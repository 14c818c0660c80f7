#!/usr/bin/env bash
# End-to-end test: the real Linux NVMe/TCP host (kernel driver, nvme-cli, fio, ext4) against
# a target, in a QEMU guest (ci/e2e-vm.sh boots it; tests/e2e/guest.sh runs inside it).
#
#   REWIND_E2E_TARGET=kernel|rewind  which target the guest tests (default kernel: the
#                                    kernel's nvmet standing in until rewind's target exists)
#   REWIND_E2E_DIGEST=off|on|both    sequences without / with header+data digests (both)
#   REWIND_E2E_TIMEOUT=S             hard limit for the VM (default 900)
#   REWIND_E2E_OUT=DIR               logs (default target/e2e-out; results.txt first)
#   REWIND_E2E_CACHE=DIR             guest image cache (default ~/.cache/rewind-e2e)
#
# For the rewind target it builds `cargo build --release` and ships target/release/rewind
# into the guest as /job/rewind. First run on a fresh machine: host packages and the guest
# image (~2 min); after that the image is reused.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${REWIND_E2E_TARGET:-kernel}
digest=${REWIND_E2E_DIGEST:-both}
out=${REWIND_E2E_OUT:-target/e2e-out}
case "$target" in kernel|rewind) ;; *) echo "REWIND_E2E_TARGET must be kernel or rewind" >&2; exit 2 ;; esac

job=$(mktemp -d "${TMPDIR:-/tmp}/rewind-e2e-job.XXXXXX")
trap 'rm -rf "$job"' EXIT
cp tests/e2e/guest.sh "$job/"
if [ "$target" = rewind ]; then
  if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  printf '\n==> cargo build --release\n'
  cargo build --release
  bin=${CARGO_TARGET_DIR:-target}/release/rewind
  [ -x "$bin" ] || { echo "$bin was not built (is there a rewind binary yet?)" >&2; exit 1; }
  cp "$bin" "$job/rewind"
fi

printf '\n==> e2e: %s target, digests %s (logs: %s)\n' "$target" "$digest" "$out"
rm -rf "$out"
set +e
ci/e2e-vm.sh --timeout "${REWIND_E2E_TIMEOUT:-900}" "$job" "$out" -- guest.sh --target "$target" --digest "$digest"
rc=$?
set -e
echo
[ -f "$out/results.txt" ] && cat "$out/results.txt"
case $rc in
  0) echo "e2e passed" ;;
  124) echo "e2e: timed out; see $out/console.log and $out/dmesg.txt" >&2 ;;
  125) echo "e2e: the VM died; see $out/console.log" >&2 ;;
  126) echo "e2e: the harness failed (host packages or guest image)" >&2 ;;
  *) echo "e2e failed (status $rc); logs in $out" >&2 ;;
esac
exit $rc
