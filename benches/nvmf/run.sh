#!/usr/bin/env bash
# The NVMe/TCP benchmark series of BENCHMARKS.md: rewind serve on one core,
# rewind perf on the other, over loopback.
#
#   benches/nvmf/run.sh [OUT_DIR]        (default target/bench-nvmf)
#
# Env: SECONDS_PER_RUN (10), WARMUP (2), SUSTAIN (60), TARGET_CORE (0),
# PERF_CORE (1), SYNC_CORE (TARGET_CORE: all of the target on one core;
# "none" leaves the sync workers unpinned, as the runs before the sixth did,
# and the scheduler may then run them on the load generator's core),
# FILE_DIR (/var/tmp; must take O_DIRECT), IDLE (busy),
# ROUNDS (2): the journaled and plain RAM series alternate this many times,
# so their on/off ratio is read from neighbouring runs on a noisy machine
# (each JSON line carries its "round"). PAIRS (10) and PAIR_SECONDS (2): the
# QD1 randwrite on/off ratio again, from that many alternating short runs of
# a journaled and a plain volume (a fresh target each); a pair's runs are
# seconds apart, so a change of machine speed between cases moves few pairs,
# and the median of the pairs' ratios is printed to OUT_DIR/pairs.txt.
# Cases: 4 KiB randwrite then randread (same range, so reads hit written
# blocks), QD1 and QD32, on a journaled RAM volume, a plain RAM namespace
# (journaling off) and a journaled O_DIRECT file; a sustained randwrite at
# QD32 with a small forward journal (per-second IOPS); CPU per I/O of the
# reactor and of the sync worker (target with --idle adaptive, so a reactor's
# CPU time is its work, not its polling); the TCP floor.
# Each result is one JSON line in OUT_DIR/results.jsonl; CPU lines go to
# OUT_DIR/cpu.txt. RAM volumes take 2 MiB hugepages when reserved (rewind
# setup-hugepages --count 1024 covers a 1 GiB journaled volume and its map
# nodes); OUT_DIR/hugepages.txt records how many were. OUT_DIR/machine.txt
# records commit, start time and load average, for the BENCHMARKS.md entry.
set -euo pipefail
cd "$(dirname "$0")/../.."

out=${1:-target/bench-nvmf}
secs=${SECONDS_PER_RUN:-10}
warm=${WARMUP:-2}
sustain=${SUSTAIN:-60}
tcore=${TARGET_CORE:-0}
pcore=${PERF_CORE:-1}
score=${SYNC_CORE:-$tcore}
[ "$score" = none ] && score=
filedir=${FILE_DIR:-/var/tmp}
idle=${IDLE:-busy}
rounds=${ROUNDS:-2}
pairs=${PAIRS:-10}
pair_secs=${PAIR_SECONDS:-2}
round=1
port=4430
mkdir -p "$out"
: > "$out/results.jsonl"
echo "hugepages reserved: $(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages 2>/dev/null || echo 0)" \
  > "$out/hugepages.txt"
{
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
  echo "start (UTC): $(date -u '+%Y-%m-%d %H:%M')"
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -r)"
  echo "target core: $tcore, perf core: $pcore, sync core: ${score:-unpinned}, idle: $idle"
} > "$out/machine.txt"

cargo build --release --bin rewind --example tcp_floor
bin=target/release/rewind

config() {   # config NAME DEVICE SIZE JOURNAL
  cat <<EOF
[service]
data_dir = "$out/data"
rpc_socket = "$out/rewind.sock"
${score:+sync_core = $score}

[[listeners]]
address = "127.0.0.1"
port = $port

[[volumes]]
name = "$1"
device = "$2"
size = "$3"
journal = $4
EOF
}

serve() {   # serve NAME DEVICE SIZE JOURNAL
  config "$@" > "$out/$1.toml"
  "$bin" serve --config "$out/$1.toml" --cores "$tcore" --idle "$idle" \
    > "$out/$1.serve.out" 2> "$out/$1.serve.log" &
  server=$!
  for _ in $(seq 1 600); do
    grep -q '^ready:' "$out/$1.serve.out" 2>/dev/null && return 0
    kill -0 "$server" 2>/dev/null || { cat "$out/$1.serve.log" >&2; return 1; }
    sleep 0.1
  done
  echo "serve $1 did not become ready" >&2
  return 1
}

stop() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$filedir/rewind-bench.img"
}

perf() {   # perf LABEL NAME ARGS...
  local label=$1 name=$2; shift 2
  "$bin" perf --nqn "nqn.2026-11.io.rewind:$name" --port "$port" --cores "$pcore" \
    --json "$@" | sed "s/^{/{\"case\":\"$label\",\"round\":$round,/" | tee -a "$out/results.jsonl"
}

thread_ticks() {   # thread_ticks PID COMM: user+system clock ticks of that thread (0 if none)
  local t
  t=$(grep -lx "$2" /proc/"$1"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5)
  [ -n "$t" ] && awk '{print $14 + $15}' /proc/"$1"/task/"$t"/stat || echo 0
}

cpu_case() {   # cpu_case NAME DEVICE SIZE JOURNAL RW: reactor and sync CPU per I/O at QD32
  local rw=$5 idle_was=$idle
  idle=adaptive
  serve "$1" "$2" "$3" "$4"
  idle=$idle_was
  local r0 s0 r1 s1 iops
  r0=$(thread_ticks "$server" reactor-0); s0=$(thread_ticks "$server" rewind-sync)
  iops=$("$bin" perf --nqn "nqn.2026-11.io.rewind:$1" --port "$port" --cores "$pcore" --json \
    --rw "$rw" --qd 32 --bs 4096 --size 256MiB --time "$secs" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["iops"])')
  r1=$(thread_ticks "$server" reactor-0); s1=$(thread_ticks "$server" rewind-sync)
  python3 -c "n = $iops * $secs; t = 1e6 / $(getconf CLK_TCK)
print('$1 $rw qd32: %d IOPS; CPU per I/O: reactor %.2f us, sync worker %.2f us'
      % ($iops, ($r1 - $r0) * t / n, ($s1 - $s0) * t / n))" | tee -a "$out/cpu.txt"
  stop
}

series() {   # series NAME DEVICE SIZE JOURNAL
  serve "$@"
  for qd in 1 32; do
    perf "$1 randwrite qd$qd" "$1" --rw randwrite --qd "$qd" --bs 4096 --size 256MiB \
      --time "$secs" --warmup "$warm"
    perf "$1 randread qd$qd" "$1" --rw randread --qd "$qd" --bs 4096 --size 256MiB \
      --time "$secs" --warmup "$warm"
  done
  stop
}

for round in $(seq 1 "$rounds"); do
  series ram-journal ram 1GiB true
  series ram-plain ram 1GiB false
done
round=1
series file-journal "$filedir/rewind-bench.img" 1GiB true

# Sustained writes with a small forward journal: many syncs during the run.
serve sustain ram 256MiB true
perf "sustain randwrite qd32 ${sustain}s" sustain --rw randwrite --qd 32 --bs 4096 \
  --time "$sustain" --warmup "$warm" --per-second
"$bin" --socket "$out/rewind.sock" --json stats sustain > "$out/sustain.stats.json" || true
stop

# What each I/O costs in CPU: the reactor's share and the sync worker's.
: > "$out/cpu.txt"
cpu_case cpu-journal ram 1GiB true randwrite
cpu_case cpu-plain ram 1GiB false randwrite

# QD1 write on/off from alternating short runs (see PAIRS above).
: > "$out/pairs.jsonl"
for pair in $(seq 1 "$pairs"); do
  for journal in true false; do
    serve "pair-$journal" ram 1GiB "$journal"
    "$bin" perf --nqn "nqn.2026-11.io.rewind:pair-$journal" --port "$port" --cores "$pcore" \
      --json --rw randwrite --qd 1 --bs 4096 --size 256MiB --time "$pair_secs" --warmup 1 \
      | sed "s/^{/{\"pair\":$pair,\"journal\":$journal,/" >> "$out/pairs.jsonl"
    stop
  done
done
python3 - "$out/pairs.jsonl" <<'PY' | tee "$out/pairs.txt"
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["pair"], {})[r["journal"]] = r["latency_us"]
ratios = {k: [v[True][k] / v[False][k] for v in runs.values() if len(v) == 2] for k in ("mean", "p50", "p99")}
print("QD1 randwrite journaled/plain over %d pairs: " % len(ratios["mean"]) + ", ".join(
    "%s median %.2fx (%.2f-%.2f)" % (k, statistics.median(v), min(v), max(v)) for k, v in ratios.items()))
PY

# The floor: a bare loopback ping-pong of the same sizes.
for mode in "" --blocking; do
  cargo run --quiet --release --example tcp_floor -- --request 4096 --reply 16 --seconds "$secs" $mode \
    | tee -a "$out/floor.txt"
done
echo "results: $out/results.jsonl, $out/pairs.txt, $out/floor.txt"
