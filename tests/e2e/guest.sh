#!/bin/bash
# tests/e2e/guest.sh - rewind's end-to-end test, guest side. Runs inside the VM of
# ci/e2e-vm.sh (see ci/e2e.sh): the real Linux NVMe/TCP host driver, nvme-cli, fio and ext4
# against a target on 127.0.0.1:4420 in the same guest.
#
#   guest.sh --target kernel|rewind [--digest off|on|both]
#
#   --target kernel   the kernel's own nvmet (configfs, a brd RAM disk) stands in for ours,
#                     so the harness and every generic step can be checked without rewind
#   --target rewind   starts /job/rewind serve (see the REWIND TARGET section for what
#                     that assumes of the CLI and the target)
#   --digest          run the whole sequence without digests, with header+data digests
#                     (nvme connect --hdr-digest --data-digest), or both (default)
# Environment: E2E_OUT (logs; default /out, the harness's OUT_DIR), FIO_ENGINE (io_uring),
#   FIO_SIZE_4K (8m), FIO_SIZE_128K (32m), VOLUME_MB (256).
#
# The sequence, once per digest setting: discover, connect, list, id-ctrl, id-ns, four fio
# randwrite jobs verified with crc32c (bs 4k/128k x iodepth 1/16), mkfs.ext4 + mount +
# files + sync + umount, take a point P, change the files, then a view at P must show the
# old file system, a read at P (the vendor read-at-point command) must return the old
# bytes of a changed block, and disconnect. For --target kernel, nvmet has no points in
# time, so "point", "view" and "read-at-point" are stand-ins marked [stand-in]: P copies
# the RAM disk to a second one, the view is that copy added as namespace 2, and the read
# is an ordinary Read (0x02) through nvme io-passthru of namespace 2.
#
# Each step prints "PASS <step>" or "FAIL <step>"; the first failure ends the run with
# status 1. Logs in E2E_OUT: results.txt, target.log, <sequence>/ (nvme outputs, fio
# JSON, files checked), dmesg-at-failure.txt; the harness adds console.log and dmesg.txt.
set -Eeuo pipefail

NQN=nqn.2026-11.io.rewind:vol0
ADDR=127.0.0.1 PORT=4420
TARGET="" DIGEST=both
while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGET=${2:-}; shift 2 ;;
    --digest) DIGEST=${2:-}; shift 2 ;;
    *) echo "guest.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$TARGET" in kernel|rewind) ;; *) echo "guest.sh: --target kernel|rewind" >&2; exit 2 ;; esac
case "$DIGEST" in off|on) SEQUENCES=$DIGEST ;; both) SEQUENCES="off on" ;;
  *) echo "guest.sh: --digest off|on|both" >&2; exit 2 ;; esac
OUT=${E2E_OUT:-/out}
FIO_ENGINE=${FIO_ENGINE:-io_uring} FIO_SIZE_4K=${FIO_SIZE_4K:-8m} FIO_SIZE_128K=${FIO_SIZE_128K:-32m}
VOLUME_MB=${VOLUME_MB:-256}
mkdir -p "$OUT" /mnt/live /mnt/view
: > "$OUT/results.txt"

# ------------------------------------------------------------------ step bookkeeping
STEP=setup SEQ="" dir=$OUT
result() { echo "$*" | tee -a "$OUT/results.txt"; }
step() {   # step NAME FUNCTION [ARGS...]
  STEP=${SEQ:+$SEQ/}$1; shift
  local t0=$SECONDS
  echo; echo "---- $STEP"
  "$@"
  result "PASS $STEP ($((SECONDS - t0)) s)"
}
fail() { echo "  $*" >&2; exit 1; }
trap 'echo "  command failed (status $?), line $LINENO: $BASH_COMMAND" >&2' ERR
on_exit() {
  local rc=$?
  trap - ERR
  if [ $rc != 0 ]; then
    result "FAIL $STEP"
    dmesg > "$OUT/dmesg-at-failure.txt" 2>&1 || true
    for m in /mnt/view /mnt/live; do if mountpoint -q $m; then umount $m || true; fi; done
    timeout 30 nvme disconnect -n "$NQN" >/dev/null 2>&1 || true
  fi
  target_stop || true
  if [ $rc = 0 ]; then result "E2E PASS ($TARGET target, digests: $SEQUENCES)"
  else result "E2E FAIL: $STEP (logs in the out dir)"; fi
  exit $rc
}
trap on_exit EXIT
exec 3>&1                              # the console, whatever a step redirects
run() { echo "  \$ $*" >&3; "$@"; }   # show a command, then run it

# ------------------------------------------------------------------ finding devices
# No udev in the guest: find nodes through sysfs. With multipath on, the namespace is the
# head disk nvmeXnY; nvmeXcYnZ are hidden per-path disks without /dev nodes.
ctrl_dev() {   # the live TCP controller of $NQN, e.g. /dev/nvme1
  local c
  for c in /sys/class/nvme/nvme*; do
    [ "$(cat "$c/subsysnqn" 2>/dev/null)" = "$NQN" ] && [ "$(cat "$c/transport" 2>/dev/null)" = tcp ] \
      && [ "$(cat "$c/state" 2>/dev/null)" = live ] && { echo "/dev/${c##*/}"; return 0; }
  done
  return 1
}
ns_dev() {   # ns_dev NSID: the namespace's block device, e.g. /dev/nvme1n1
  local b
  for b in /sys/block/nvme*n*; do
    [[ ${b##*/} =~ ^nvme[0-9]+n[0-9]+$ ]] || continue
    [ "$(cat "$b/device/subsysnqn" 2>/dev/null)" = "$NQN" ] && [ "$(cat "$b/nsid" 2>/dev/null)" = "$1" ] \
      && [ -b "/dev/${b##*/}" ] && { echo "/dev/${b##*/}"; return 0; }
  done
  return 1
}
ctrl_gone() { ! ctrl_dev > /dev/null; }
ns_gone() { ! ns_dev "$1" > /dev/null; }
wait_for() {   # wait_for SECONDS COMMAND...: retry every 0.2 s
  local end=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}
listening() { [ -n "$(ss -Hltn "sport = :$PORT")" ]; }

# ------------------------------------------------------------------ KERNEL TARGET (stand-in)
kernel_target_start() {
  # ram0: namespace 1; ram1: the copy taken at the point (stand-in for a view).
  run modprobe brd rd_nr=2 rd_size=$((VOLUME_MB * 1024)) max_part=0
  run modprobe -a nvmet nvmet-tcp
  local s=/sys/kernel/config/nvmet/subsystems/$NQN p=/sys/kernel/config/nvmet/ports/1
  mkdir "$s"; echo 1 > "$s/attr_allow_any_host"
  mkdir "$s/namespaces/1"; echo -n /dev/ram0 > "$s/namespaces/1/device_path"
  echo 1 > "$s/namespaces/1/enable"
  mkdir "$p"; echo tcp > "$p/addr_trtype"; echo ipv4 > "$p/addr_adrfam"
  echo "$ADDR" > "$p/addr_traddr"; echo "$PORT" > "$p/addr_trsvcid"
  ln -s "$s" "$p/subsystems/$NQN"
  { echo "kernel nvmet: $NQN, namespace 1 on /dev/ram0 (${VOLUME_MB} MiB), tcp $ADDR:$PORT"
    grep -r . /sys/kernel/config/nvmet/ports/1/addr_* "$s"/namespaces/*/device_path; } >> "$OUT/target.log"
}
kernel_target_stop() {
  local s=/sys/kernel/config/nvmet/subsystems/$NQN p=/sys/kernel/config/nvmet/ports/1
  [ -d "$s" ] || return 0
  rm -f "$p/subsystems/$NQN"; rmdir "$p" "$s"/namespaces/* "$s" 2>/dev/null || true
}
kernel_point_take() {   # nvmet cannot go back in time: copy namespace 1 as it is now
  run dd if=/dev/ram0 of=/dev/ram1 bs=1M iflag=direct oflag=direct status=none
  echo "point: /dev/ram0 copied to /dev/ram1" >> "$OUT/target.log"
}
kernel_view_create() {   # prints the view's NSID
  local ns=/sys/kernel/config/nvmet/subsystems/$NQN/namespaces/2
  mkdir "$ns"; echo -n /dev/ram1 > "$ns/device_path"; echo 1 > "$ns/enable"
  echo 2
}
kernel_view_remove() {   # kernel_view_remove NSID
  local ns=/sys/kernel/config/nvmet/subsystems/$NQN/namespaces/$1
  echo 0 > "$ns/enable"; rmdir "$ns"
}
kernel_read_at_point() {   # kernel_read_at_point LBA NLB OUTFILE: a plain Read of the view
  local dev
  dev=$(ns_dev "$VIEW_NSID")
  run nvme io-passthru "$dev" --opcode=0x02 --namespace-id="$VIEW_NSID" --read --raw-binary \
    --data-len=$(($2 * LBA_SIZE)) --cdw10=$(($1 & 0xffffffff)) --cdw11=$(($1 >> 32)) \
    --cdw12=$(($2 - 1)) > "$3" 2> "$dir/io-passthru.txt"
}

# ------------------------------------------------------------------ REWIND TARGET
# What this relies on of rewind:
#  - `/job/rewind serve --config FILE` runs the service in the foreground, logs to
#    stdout/stderr, listens for NVMe/TCP on the configured address and stops on SIGTERM.
#  - The config is TOML as written by rewind_config below: one [[volumes]] entry
#    (name, device path, size) exported as subsystem nqn.2026-11.io.rewind:<name> with the
#    live volume as namespace 1, one [[listeners]] entry, and the data directory
#    /run/rewind (lock, management socket /run/rewind/rewind.sock).
#    The backing device is a brd RAM disk: the engine opens devices with O_DIRECT, which
#    tmpfs (/tmp) does not support on 6.1.
#  - A point is a wall-clock time in nanoseconds since the Unix epoch (the target runs in
#    this guest, so the clocks agree): the newest point at or before it serves reads.
#  - `/job/rewind --data-dir /run/rewind --json view create vol0 --at RFC3339` asks the
#    running service (JSON-RPC over its management socket) to add a read-only namespace
#    presenting the volume at that point and prints the result, whose "nsid" member is the
#    view's NSID; the host learns of it through the changed-namespace AEN.
#    `/job/rewind --data-dir /run/rewind view delete vol0 N` removes it.
#  - Vendor read-at-point: opcode 0x82 (data controller-to-host), NSID 1 (the live
#    namespace), CDW10/11 starting LBA (low/high, as in Read), CDW12 bits 15:0 number of
#    LBAs minus 1 (as in Read), CDW13 = 0 (point is a time; 1 would mean CDW14/15 is a
#    seq), CDW14/15 the point (low/high 32 bits). Returns the data as Read does.
REWIND_CONFIG=/tmp/rewind.toml
rewind_config() {
  cat <<EOF
[service]
data_dir = "/run/rewind"

[[listeners]]
address = "$ADDR"
port = $PORT

[[volumes]]
name = "vol0"
device = "/dev/ram0"
size = "$((VOLUME_MB))MiB"
allowed_hosts = []
EOF
}
TARGET_PID=""
rewind_target_start() {
  [ -x /job/rewind ] || fail "/job/rewind is missing (ci/e2e.sh stages target/release/rewind)"
  # Room for the engine's journals and mirror besides the volume itself.
  run modprobe brd rd_nr=1 rd_size=$((VOLUME_MB * 3 * 1024)) max_part=0
  mkdir -p /run/rewind
  rewind_config > "$REWIND_CONFIG"
  cp "$REWIND_CONFIG" "$OUT/rewind.toml"
  echo "  \$ /job/rewind serve --config $REWIND_CONFIG > $OUT/target.log"
  /job/rewind serve --config "$REWIND_CONFIG" >> "$OUT/target.log" 2>&1 &
  TARGET_PID=$!
}
target_exited() { ! kill -0 "$TARGET_PID" 2>/dev/null; }
rewind_target_stop() {
  [ -n "$TARGET_PID" ] && kill -0 "$TARGET_PID" 2>/dev/null || return 0
  kill -TERM "$TARGET_PID"
  wait_for 10 target_exited || kill -KILL "$TARGET_PID"
}
rewind_point_take() {   # sets POINT_NS; writes before this are in the point, later ones not
  sleep 0.2; POINT_NS=$(date +%s%N); sleep 0.2
  echo "point: $POINT_NS ns" | tee -a "$OUT/target.log"
}
rewind_view_create() {   # prints the view's NSID
  local at reply
  # POINT_NS as RFC 3339 (UTC, nanoseconds): seconds, then the 9-digit fraction.
  at=$(date -u -d "@${POINT_NS%?????????}" +%Y-%m-%dT%H:%M:%S).${POINT_NS: -9}Z
  reply=$(/job/rewind --data-dir /run/rewind --json view create vol0 --at "$at" \
    2>> "$OUT/target.log") || fail "rewind view create failed (see target.log)"
  echo "$reply" >> "$OUT/target.log"
  echo "$reply" | grep -o '"seq": *[0-9]*' | head -n 1 | tr -dc 0-9 > "$OUT/view-seq"
  echo "$reply" | grep -o '"nsid": *[0-9]*' | tr -dc 0-9
}
rewind_view_remove() {   # rewind_view_remove NSID
  run /job/rewind --data-dir /run/rewind view delete vol0 "$1" >> "$OUT/target.log" 2>&1
}
rewind_read_at_point() {   # rewind_read_at_point LBA NLB OUTFILE: vendor command 0x82 on NSID 1
  local dev
  dev=$(ns_dev 1)
  run nvme io-passthru "$dev" --opcode=0x82 --namespace-id=1 --read --raw-binary \
    --data-len=$(($2 * LBA_SIZE)) --cdw10=$(($1 & 0xffffffff)) --cdw11=$(($1 >> 32)) \
    --cdw12=$(($2 - 1)) --cdw13=0 --cdw14=$((POINT_NS & 0xffffffff)) --cdw15=$((POINT_NS >> 32)) \
    > "$3" 2> "$dir/io-passthru.txt"
}

target_start() { "${TARGET}_target_start"; }
target_stop() { "${TARGET}_target_stop"; }

# ------------------------------------------------------------------ generic steps
up_or_gone() { listening || { [ -n "$TARGET_PID" ] && target_exited; }; }
do_wait_listen() {
  wait_for 60 up_or_gone || fail "nothing listens on $ADDR:$PORT after 60 s (see target.log)"
  if [ -n "$TARGET_PID" ] && target_exited; then
    tail -n 20 "$OUT/target.log"; fail "the target exited (see target.log)"
  fi
  ss -Hltn "sport = :$PORT"
}
do_discover() {
  run timeout 60 nvme discover -t tcp -a "$ADDR" -s "$PORT" > "$dir/discover.txt" 2>&1 \
    || { cat "$dir/discover.txt"; fail "nvme discover failed"; }
  grep -E '^(trtype|traddr|trsvcid|subnqn):' "$dir/discover.txt" | sed 's/^/  /'
  grep -q "^subnqn: *$NQN\$" "$dir/discover.txt" || fail "$NQN is not in the discovery log"
}
do_connect() {   # do_connect off|on
  local dg=()
  [ "$1" = on ] && dg=(--hdr-digest --data-digest)
  # The kernel host fails the connect unless the target grants exactly the digests asked.
  run timeout 60 nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN" "${dg[@]}" > "$dir/connect.txt" 2>&1 \
    || { cat "$dir/connect.txt"; fail "nvme connect failed"; }
  wait_for 20 ctrl_dev > /dev/null || fail "no live controller for $NQN in /sys/class/nvme"
  wait_for 20 ns_dev 1 > /dev/null || fail "no block device for namespace 1 in /sys/block"
  CTRL=$(ctrl_dev) DEV=$(ns_dev 1)
  LBA_SIZE=$(cat "/sys/block/${DEV#/dev/}/queue/logical_block_size")
  echo "  controller $CTRL, namespace $DEV, $(($(blockdev --getsize64 "$DEV") >> 20)) MiB, LBA $LBA_SIZE bytes"
}
do_list() {
  run nvme list > "$dir/list.txt" 2>&1 || { cat "$dir/list.txt"; fail "nvme list failed"; }
  cat "$dir/list.txt"
  grep -q "${DEV#/dev/}" "$dir/list.txt" || fail "$DEV is not in nvme list"
}
do_id_ctrl() {
  run nvme id-ctrl "$CTRL" > "$dir/id-ctrl.txt" 2>&1 || { cat "$dir/id-ctrl.txt"; fail "nvme id-ctrl failed"; }
  grep -E '^(mn|fr|mdts|cntlid|ver|ioccsz|iorcsz|nn|sgls|subnqn) ' "$dir/id-ctrl.txt" | sed 's/^/  /'
  grep -q "^subnqn *: $NQN\$" "$dir/id-ctrl.txt" || fail "id-ctrl subnqn is not $NQN"
}
do_id_ns() {
  run nvme id-ns "$DEV" > "$dir/id-ns.txt" 2>&1 || { cat "$dir/id-ns.txt"; fail "nvme id-ns failed"; }
  grep -E '^(nsze|ncap|nuse|nlbaf|flbas|lbaf +[0-9]+ .*in use)' "$dir/id-ns.txt" | sed 's/^/  /'
  grep -Eq '^nsze *: *0x[0-9a-f]*[1-9a-f]' "$dir/id-ns.txt" || fail "id-ns: namespace size is 0"
}
do_fio() {   # do_fio BS IODEPTH SIZE: random writes, then every block read back and checked
  local name=randwrite-$1-qd$2
  run timeout 300 fio --name="$name" --filename="$DEV" --ioengine="$FIO_ENGINE" --direct=1 \
    --rw=randwrite --bs="$1" --iodepth="$2" --size="$3" --verify=crc32c --do_verify=1 \
    --verify_fatal=1 --randrepeat=0 --eta=never --output-format=json --output="$dir/fio-$name.json" \
    || { cat "$dir/fio-$name.json"; fail "fio $name failed"; }
  local writes
  writes=$(awk '/"write" : \{/ { w = 1 } w && /"total_ios"/ { gsub(/[^0-9]/, ""); print; exit }' "$dir/fio-$name.json")
  grep -q '"error" : 0' "$dir/fio-$name.json" || fail "fio $name reported an error"
  [ "${writes:-0}" -gt 0 ] || fail "fio $name wrote nothing"
  echo "  $writes writes of $1 at iodepth $2, all read back and verified (crc32c)"
}
pattern() {   # one 4 KiB block of text
  awk -v t="rewind e2e $1 block" 'BEGIN { while (length(s) < 4096) s = s t "\n"; printf "%s", substr(s, 1, 4096) }'
}
do_fs_create() {   # ext4, old files, their checksums, and the disk address of one block
  run mkfs.ext4 -q -F -b 4096 "$DEV" > "$dir/mkfs.txt" 2>&1 || { cat "$dir/mkfs.txt"; fail "mkfs.ext4 failed"; }
  run mount "$DEV" /mnt/live
  mkdir /mnt/live/dir
  echo "written before the point" > /mnt/live/old.txt
  head -c 1M /dev/urandom > /mnt/live/dir/random.bin
  seq 1 20000 > /mnt/live/dir/numbers.txt
  pattern OLD > /mnt/live/block.bin
  (cd /mnt/live && find . -type f ! -path './lost+found/*' | sort | xargs sha256sum) > "$dir/old.sha256"
  run sync
  run umount /mnt/live
  # block.bin's one block: its file-system block number -> LBA, and the bytes now there.
  local fsblk
  fsblk=$(debugfs -R "bmap /block.bin 0" "$DEV" 2>/dev/null | tr -dc 0-9)
  [[ $fsblk =~ ^[1-9][0-9]*$ ]] || fail "debugfs could not map block.bin"
  BLOCK_LBA=$((fsblk * 4096 / LBA_SIZE)) BLOCK_NLB=$((4096 / LBA_SIZE))
  dd if="$DEV" of="$dir/block-old.bin" bs=4096 skip="$fsblk" count=1 iflag=direct status=none
  pattern OLD > "$dir/pattern-old.bin"; pattern NEW > "$dir/pattern-new.bin"
  cmp "$dir/block-old.bin" "$dir/pattern-old.bin" || fail "block.bin is not at LBA $BLOCK_LBA"
  echo "  $(wc -l < "$dir/old.sha256") files; block.bin is file-system block $fsblk = LBA $BLOCK_LBA ($BLOCK_NLB LBAs)"
}
do_point() {
  "${TARGET}_point_take"
}
do_fs_change() {   # after the point: change a file in place, add and remove files
  run mount "$DEV" /mnt/live
  dd if="$dir/pattern-new.bin" of=/mnt/live/block.bin bs=4096 conv=notrunc,fsync status=none
  echo "written after the point" > /mnt/live/new.txt
  echo "appended after the point" >> /mnt/live/old.txt
  rm /mnt/live/dir/numbers.txt
  run sync
  run umount /mnt/live
  dd if="$DEV" of="$dir/block-live.bin" bs=4096 skip=$((BLOCK_LBA * LBA_SIZE / 4096)) count=1 \
    iflag=direct status=none
  cmp -s "$dir/block-live.bin" "$dir/pattern-new.bin" \
    || fail "the live LBA $BLOCK_LBA does not hold block.bin's new bytes (ext4 moved it?)"
  echo "  live namespace: LBA $BLOCK_LBA now holds the new bytes"
}
do_view() {   # a view at the point shows the old file system
  VIEW_NSID=$("${TARGET}_view_create")
  [[ $VIEW_NSID =~ ^[0-9]+$ ]] || fail "no view NSID (got '$VIEW_NSID')"
  # The changed-namespace AEN makes the host rescan; ask for a rescan as well if slow.
  wait_for 10 ns_dev "$VIEW_NSID" > /dev/null || { nvme ns-rescan "$CTRL" || true; }
  wait_for 20 ns_dev "$VIEW_NSID" > /dev/null || fail "namespace $VIEW_NSID did not appear on the host"
  local vdev
  vdev=$(ns_dev "$VIEW_NSID")
  echo "  view: namespace $VIEW_NSID = $vdev"
  run mount -o ro,noload "$vdev" /mnt/view
  (cd /mnt/view && sha256sum --quiet -c "$dir/old.sha256") || fail "the view's files differ from the old ones"
  [ ! -e /mnt/view/new.txt ] || fail "the view has new.txt, written after the point"
  cmp -s /mnt/view/block.bin "$dir/pattern-old.bin" || fail "the view's block.bin is not the old one"
  find /mnt/view -type f ! -path '*/lost+found/*' | sort > "$dir/view-files.txt"
  run umount /mnt/view
  echo "  the view at the point holds the old files (checksums match), not the new ones"
}
do_read_at_point() {   # the changed block, read at the point, gives the old bytes
  "${TARGET}_read_at_point" "$BLOCK_LBA" "$BLOCK_NLB" "$dir/block-at-point.bin" \
    || { cat "$dir/io-passthru.txt"; fail "nvme io-passthru failed"; }
  cmp "$dir/block-at-point.bin" "$dir/block-old.bin" || fail "the read at the point is not the old bytes"
  echo "  LBA $BLOCK_LBA at the point: the old bytes ($(stat -c %s "$dir/block-at-point.bin") bytes)"
}
do_export() {   # an image at the view's point (pinned by the view): losetup -r, mount -o ro
  local at img loopdev
  at=$(cat "$OUT/view-seq")
  [[ $at =~ ^[0-9]+$ ]] || fail "no point seq from view create (got '$at')"
  img=/tmp/vol0-$SEQ.raw
  rm -f "$img"
  run /job/rewind --data-dir /run/rewind export vol0 --at "$at" --out "$img" \
    > "$dir/export.txt" 2>&1 || { cat "$dir/export.txt"; fail "rewind export failed"; }
  tail -n 2 "$dir/export.txt" | sed 's/^/  /'
  local sum
  sum=$(sha256sum "$img" | cut -d' ' -f1)
  grep -q "$sum" "$dir/export.txt" || fail "the checksum rewind export printed is not the image's ($sum)"
  run modprobe loop
  loopdev=$(losetup -r -f --show "$img") || fail "losetup -r of the image failed"
  run mount -o ro,noload "$loopdev" /mnt/view
  (cd /mnt/view && sha256sum --quiet -c "$dir/old.sha256") || fail "the image's files differ from the old ones"
  [ ! -e /mnt/view/new.txt ] || fail "the image has new.txt, written after the point"
  run umount /mnt/view
  losetup -d "$loopdev"
  echo "  image of $(($(stat -c %s "$img") >> 20)) MiB ($(du -k "$img" | cut -f1) KiB allocated): the old files, checksum $sum"
  rm -f "$img"
}
do_metrics() {   # the Prometheus endpoint counts the host's writes on vol0
  local page writes
  # fd 3 is the console (see run); the request goes over fd 8.
  exec 8<>/dev/tcp/127.0.0.1/9455 || fail "nothing listens on 127.0.0.1:9455 (metrics)"
  printf 'GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n' >&8
  page=$(timeout 10 cat <&8); exec 8<&-
  echo "$page" > "$dir/metrics.txt"
  writes=$(echo "$page" | awk '/^rewind_io_operations_total\{volume="vol0",op="write"\}/ { print int($2) }')
  [ "${writes:-0}" -gt 0 ] || fail "metrics: no writes counted for vol0 (see metrics.txt)"
  grep -q '^rewind_io_latency_seconds_count{volume="vol0",op="write"}' "$dir/metrics.txt" \
    || fail "metrics: no write latency histogram for vol0"
  echo "  metrics: $writes host writes counted on vol0, latency histograms present"
}
do_view_remove() {
  "${TARGET}_view_remove" "$VIEW_NSID"
  wait_for 20 ns_gone "$VIEW_NSID" || fail "namespace $VIEW_NSID is still on the host"
}
do_disconnect() {
  run timeout 60 nvme disconnect -n "$NQN" > "$dir/disconnect.txt" 2>&1 \
    || { cat "$dir/disconnect.txt"; fail "nvme disconnect failed"; }
  cat "$dir/disconnect.txt"
  { wait_for 20 ctrl_gone && wait_for 20 ns_gone 1; } || fail "$CTRL or $DEV still present"
}

# ------------------------------------------------------------------ main
echo "guest.sh: target $TARGET, digests $SEQUENCES; $(uname -r), $(nvme version | head -n 1), $(fio --version)"
: > "$OUT/target.log"
run modprobe nvme-tcp
step target-start target_start
step listen do_wait_listen
st=""   # the kernel target's point/view/read-at-point are stand-ins (see the header)
if [ "$TARGET" = kernel ]; then st=" [stand-in]"; fi
for d in $SEQUENCES; do
  SEQ=digest-$d dir=$OUT/digest-$d
  mkdir -p "$dir"
  step discover do_discover
  step connect do_connect "$d"
  step list do_list
  step id-ctrl do_id_ctrl
  step id-ns do_id_ns
  for bs in 4k 128k; do
    size=$FIO_SIZE_4K; [ $bs = 128k ] && size=$FIO_SIZE_128K
    for qd in 1 16; do step "fio-$bs-qd$qd" do_fio $bs $qd "$size"; done
  done
  step fs-create do_fs_create
  step "point$st" do_point
  step fs-change do_fs_change
  step "view$st" do_view
  step "read-at-point$st" do_read_at_point
  if [ "$TARGET" = rewind ]; then step export do_export; fi
  step "view-remove$st" do_view_remove
  if [ "$TARGET" = rewind ]; then step metrics do_metrics; fi
  step disconnect do_disconnect
done
SEQ="" STEP=target-stop
target_stop
