#!/usr/bin/env bash
# e2e-vm.sh - run a command inside a throwaway Linux VM that has the kernel's NVMe/TCP host
# (and nvmet target) drivers, nvme-cli, fio and e2fsprogs, for rewind's end-to-end tests.
#
#   ci/e2e-vm.sh [options] JOB_DIR OUT_DIR -- COMMAND [ARGS...]
#   ci/e2e-vm.sh --build-only
#
# JOB_DIR is copied into the guest's RAM at /job (writable, private; symlinks stay links,
# so copy files in). COMMAND runs there as root: a file of JOB_DIR (e.g. `guest.sh
# --target kernel`) runs from /job, anything else is looked up in the guest's PATH.
# OUT_DIR (created if missing) is the guest's /out, shared live over 9p, so whatever the
# guest writes there survives a hang; COMMAND sees E2E_OUT=/out. This script's exit
# status is COMMAND's, or:
#   124  timeout (the guest's budget ran out, or the VM was hard-killed at --timeout)
#   125  the VM died before COMMAND reported a status (no boot, panic, 9p mount failure)
#   126  the harness itself failed (host packages, image build)     2  bad usage
#
# Options: --timeout S   hard wall-clock limit for the VM (default 600); COMMAND gets S-60
#                        (S*2/3 below 180) and is killed at that point
#          --mem MB (default 2048)   --cpus N (default 2)   -e NAME=VALUE (export to COMMAND)
#          --append ARGS   extra kernel command line     --build-only   --rebuild
#
# How it works
#  1. Host tools (qemu-system-x86, mmdebstrap, cpio, kmod) are apt-get installed if missing.
#  2. The guest image is built once and cached in $REWIND_E2E_CACHE (default
#     ${XDG_CACHE_HOME:-~/.cache}/rewind-e2e/image-KEY), KEY being a hash of the recipe
#     below (package list, module list, init script, RECIPE version):
#     - the kernel: the package linux-image-amd64 currently points to is fetched with
#       `apt-get download` and unpacked with dpkg-deb (nothing is installed on the host);
#     - the root: `mmdebstrap --variant=essential` with GUEST_PACKAGES, plus the modules
#       in GUEST_MODULES and their dependencies (from the unpacked kernel, run through
#       depmod), plus our /init; packed as an uncompressed cpio (shared/e2e reports that
#       gunzip under emulation costs ~5 s per boot). ~250 MB; older images are removed when a new one
#       is built. `--rebuild` forces a build; `rm -rf` the cache dir is always safe.
#     The key leaves out the kernel version on purpose (computing it needs no network):
#     an image keeps the kernel it was built with until the recipe changes or --rebuild.
#  3. Each run boots that kernel with the cpio as its RAM root under qemu TCG (this
#     machine has no usable KVM): `-nic none` (the guest only has lo), serial console,
#     `tsc=reliable` (shared/e2e found that without it the clocksource falls back to the
#     emulated HPET and fio gets about half the I/O done).
#     Three 9p shares: the job dir (read-only, copied to /job by /init), the out dir
#     (/out) and a private control dir (the command line in, the exit status out).
#  4. /init mounts the basics, runs COMMAND under `timeout`, writes its status to the
#     control share and dmesg to /out/dmesg.txt, and powers off. A guest watchdog dumps
#     blocked tasks (sysrq-w) if COMMAND is stuck in the kernel; the host kills QEMU at
#     --timeout whatever happens.
#
# Debugging a failure: OUT_DIR/console.log is the whole serial console (boot messages,
# panics, COMMAND's output); OUT_DIR/dmesg.txt the guest kernel log at the end (with the
# stacks of blocked tasks after a timeout); the image build log is in the image dir
# (build.log). To look around in the guest, run a COMMAND like `bash -c 'lsmod; ls /dev'`;
# `--append loglevel=7` shows more of the boot.
set -euo pipefail

RECIPE=1   # bump when the image recipe (layout, init) changes meaning
SUITE=bookworm
GUEST_PACKAGES="mount kmod util-linux procps iproute2 e2fsprogs nvme-cli fio"
GUEST_MODULES="nvme-tcp nvme-fabrics nvmet nvmet-tcp brd loop null_blk configfs ext4
  crc32c_generic crc32c-intel 9p 9pnet_virtio virtio_pci virtio_rng dm-mod"

me=${0##*/}
say() { echo "$me: $*" >&2; }
die() { echo "$me: error: $*" >&2; exit "${2:-126}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ------------------------------------------------------------------ the guest's PID 1
# Baked into the image (so part of its cache key). Reads /run/e2e/ctl/cmd.sh, which sets
# E2E_BUDGET, E2E_CMD (an array) and exports -e variables.
GUEST_INIT=$(cat <<'INIT'
#!/bin/bash
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
say() { echo "=== e2e-vm: $*"; }
off() { sync; echo o > /proc/sysrq-trigger; sleep 60; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts
for d in /tmp /run /dev/shm; do mount -t tmpfs -o mode=1777 tmpfs "$d"; done
ln -sf /proc/self/fd /dev/fd
modprobe configfs && mount -t configfs configfs /sys/kernel/config
ip link set lo up
modprobe -a virtio_pci virtio_rng 9pnet_virtio 9p
mkdir -p /run/e2e/ctl /run/e2e/job /job /out
o=trans=virtio,version=9p2000.L,msize=262144
if ! { mount -t 9p -o $o e2e_ctl /run/e2e/ctl && mount -t 9p -o $o,ro e2e_job /run/e2e/job &&
       mount -t 9p -o $o e2e_out /out && cp -a /run/e2e/job/. /job/; }; then
  say "could not mount the 9p shares"; off
fi
umount /run/e2e/job
. /run/e2e/ctl/cmd.sh
say "guest up after $(cut -d' ' -f1 /proc/uptime) s: $(uname -r), $(nproc) cpus, budget ${E2E_BUDGET}s"
( sleep $((E2E_BUDGET + 20)); say "watchdog: command stuck; blocked tasks -> dmesg.txt"
  echo w > /proc/sysrq-trigger; dmesg > /out/dmesg.txt; echo 124 > /run/e2e/ctl/rc; off ) &
cd /job
timeout -k 10 "$E2E_BUDGET" "${E2E_CMD[@]}" < /dev/null
rc=$?
[ $rc = 137 ] && rc=124   # killed by timeout -k
[ $rc = 124 ] && { say "command timed out after ${E2E_BUDGET}s"; echo w > /proc/sysrq-trigger; }
dmesg > /out/dmesg.txt
echo $rc > /run/e2e/ctl/rc
say "command exit $rc"
umount /out /run/e2e/ctl
off
INIT
)

# ------------------------------------------------------------------ arguments
timeout_s=600 mem=2048 cpus=2 append="" build_only=0 rebuild=0
envs=() pos=() cmd=()
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --mem) mem=${2:?}; shift 2 ;;
    --cpus) cpus=${2:?}; shift 2 ;;
    -e) [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { say "-e wants NAME=VALUE"; exit 2; }
        envs+=("$2"); shift 2 ;;
    --append) append=${2:?}; shift 2 ;;
    --build-only) build_only=1; shift ;;
    --rebuild) rebuild=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; cmd=("$@"); break ;;
    -*) say "unknown option $1 (see --help)"; exit 2 ;;
    *) pos+=("$1"); shift ;;
  esac
done
for n in "$timeout_s" "$mem" "$cpus"; do [[ $n =~ ^[0-9]+$ ]] || { say "numbers only: $n"; exit 2; }; done
if [ $build_only = 0 ]; then
  if [ ${#pos[@]} != 2 ] || [ ${#cmd[@]} = 0 ]; then say "usage: $me [options] JOB_DIR OUT_DIR -- COMMAND [ARGS...]"; exit 2; fi
  [ -d "${pos[0]}" ] || { say "JOB_DIR ${pos[0]} is not a directory"; exit 2; }
  [ "$timeout_s" -ge 60 ] || { say "--timeout must be at least 60"; exit 2; }
  job=$(cd "${pos[0]}" && pwd)
  mkdir -p "${pos[1]}" || die "cannot create ${pos[1]}" 2
  out=$(cd "${pos[1]}" && pwd)
fi

# ------------------------------------------------------------------ host tools
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null && command -v modprobe >/dev/null || need+=(kmod)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root or install them"
  say "installing host packages: ${need[*]}"
  apt-get update -q >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 \
    || die "apt-get install failed"
fi

# ------------------------------------------------------------------ the image (cached)
cache=${REWIND_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rewind-e2e}
key=$(printf '%s\n' "$RECIPE" "$SUITE" "$GUEST_PACKAGES" "$GUEST_MODULES" "$GUEST_INIT" \
        "${REWIND_E2E_MIRROR:-}" | sha256sum | cut -c1-12)
img=$cache/image-$key

build_image() {
  local t0=$SECONDS work kpkg kv kdir root m f
  say "building the guest image (once; 1-2 minutes) in $img"
  work=$(mktemp -d "$cache/build.XXXXXX")
  # shellcheck disable=SC2064  # expand now: $work is local
  trap "rm -rf --one-file-system '$work'" EXIT
  # The kernel linux-image-amd64 points to, unpacked (not installed).
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  if [ -z "$kpkg" ]; then apt-get update -q >&2 || die "apt-get update failed"
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  fi
  [ -n "$kpkg" ] || die "cannot tell which kernel linux-image-amd64 depends on"
  fetch() { (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >&2); }
  fetch || { apt-get update -q >&2 && fetch; } || die "apt-get download $kpkg failed"
  kdir=$work/kernel
  dpkg-deb -x "$work"/linux-image-*.deb "$kdir"
  kv=${kpkg#linux-image-}
  [ -f "$kdir/boot/vmlinuz-$kv" ] || die "no vmlinuz-$kv in $kpkg"
  depmod -b "$kdir" "$kv"
  # The root file system.
  root=$work/root
  say "mmdebstrap $SUITE (log: $img/build.log)"
  if ! mmdebstrap --variant=essential --include="$(echo "$GUEST_PACKAGES" | tr ' ' ,)" \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        "$SUITE" "$root" ${REWIND_E2E_MIRROR:+"$REWIND_E2E_MIRROR"} > "$work/build.log" 2>&1; then
    tail -n 20 "$work/build.log" >&2; die "mmdebstrap failed"
  fi
  # Only the modules we load, with everything they depend on.
  mkdir -p "$root/lib/modules/$kv"
  cp "$kdir/lib/modules/$kv"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kv/"
  for m in $GUEST_MODULES; do
    modprobe -d "$kdir" -S "$kv" --show-depends "$m" || die "kernel $kv has no module $m"
  done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r f; do
    m=$root/lib/modules/$kv/${f#"$kdir/lib/modules/$kv/"}
    mkdir -p "${m%/*}" && cp "$f" "$m"
  done
  depmod -b "$root" "$kv"
  printf '%s\n' "$GUEST_INIT" > "$root/init" && chmod 755 "$root/init"
  echo e2e > "$root/etc/hostname"
  mkdir -p "$work/img"
  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) > "$work/img/root.cpio"
  cp "$kdir/boot/vmlinuz-$kv" "$work/img/vmlinuz"
  cp "$work/build.log" "$work/img/"
  printf 'kernel %s\nbuilt %s in %s s\n' "$kpkg $(dpkg-deb -f "$work"/linux-image-*.deb Version)" \
    "$(date -u +%FT%TZ)" "$((SECONDS - t0))" > "$work/img/info"
  rm -rf "$img" && mv "$work/img" "$img"
  rm -rf --one-file-system "$work"; trap - EXIT
  for f in "$cache"/image-*; do [ "$f" = "$img" ] || rm -rf "$f"; done   # older recipes
  say "image ready in $((SECONDS - t0)) s: $(head -n 1 "$img/info")"
}

mkdir -p "$cache"
if [ $rebuild = 1 ] || [ ! -f "$img/info" ]; then
  [ "$(id -u)" = 0 ] || die "building the image needs root (mmdebstrap)"
  exec 9>"$cache/.lock"; flock 9       # concurrent callers wait for one build, then reuse it
  if [ $rebuild = 1 ] || [ ! -f "$img/info" ]; then build_image; fi
  exec 9>&-
fi
[ $build_only = 1 ] && { say "image: $img ($(head -n 1 "$img/info"))"; exit 0; }

# ------------------------------------------------------------------ one run
ctl=$(mktemp -d "${TMPDIR:-/tmp}/rewind-e2e.XXXXXX")
trap 'rm -rf "$ctl"' EXIT
budget=$((timeout_s - 60)); [ "$timeout_s" -lt 180 ] && budget=$((timeout_s * 2 / 3))
{
  echo "E2E_BUDGET=$budget"
  printf 'E2E_CMD=('; printf ' %q' "${cmd[@]}"; echo ' )'
  [ -f "$job/${cmd[0]}" ] && printf 'E2E_CMD[0]=/job/%q\n' "${cmd[0]}"   # a file in JOB_DIR
  for e in ${envs[@]+"${envs[@]}"}; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
  echo 'export E2E_OUT=/out'
} > "$ctl/cmd.sh"
rm -f "$out/console.log" "$out/dmesg.txt"

share() { echo "local,path=${1//,/,,},mount_tag=$2,security_model=none$3"; }
# shellcheck disable=SC2054  # the commas are QEMU's
qemu=(qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$cpus"
  -kernel "$img/vmlinuz" -initrd "$img/root.cpio"
  -append "console=ttyS0 quiet panic=-1 tsc=reliable mitigations=off $append"
  -nographic -no-reboot -nic none -device virtio-rng-pci -vga none
  -fw_cfg name=etc/sercon-port,string=0   # keep SeaBIOS's screen codes off the console
  -virtfs "$(share "$ctl" e2e_ctl '')" -virtfs "$(share "$job" e2e_job ,readonly=on)"
  -virtfs "$(share "$out" e2e_out '')")
say "booting $(head -n 1 "$img/info") under TCG (limit ${timeout_s}s); console: $out/console.log"
t0=$SECONDS
set +e
timeout -k 5 "$timeout_s" "${qemu[@]}" < /dev/null 2>&1 | tr -d '\r' \
  | grep --line-buffered -v '^qemu-system-x86_64: -fw_cfg name=etc/sercon-port' | tee "$out/console.log"
qrc=${PIPESTATUS[0]}
set -e
rc=""
[ -f "$ctl/rc" ] && rc=$(tr -dc 0-9 < "$ctl/rc")
if [ -z "$rc" ]; then
  if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then rc=124; say "timeout: QEMU killed after ${timeout_s}s"
  else rc=125; say "the VM stopped without a result (qemu status $qrc); see $out/console.log"; fi
fi
say "exit $rc after $((SECONDS - t0)) s; logs in $out"
exit "$rc"
