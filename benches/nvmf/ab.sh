#!/usr/bin/env bash
# A/B of two or more rewind builds on the cases a write-path change moves,
# alternating builds round by round so a change of machine speed hits both:
#
#   benches/nvmf/ab.sh OUT_DIR ROUNDS BIN...    (each BIN a rewind binary)
#
# Per round, per build, per volume (journaled, then plain; 1 GiB RAM, a
# fresh target each): `rewind serve --cores $TARGET_CORE` under taskset with
# the sync worker on that core, a 5 s QD32 randwrite (IOPS; CPU per write of
# the reactor and of the sync worker) and a 3 s QD1 randwrite (latency),
# both by `rewind perf` on $PERF_CORE. Env: IDLE (busy), TARGET_CORE (0),
# PERF_CORE (1). One JSON line per run in OUT_DIR/ab.jsonl; the medians per
# build and the per-round on/off ratios are printed at the end.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 OUT_DIR ROUNDS BIN..." >&2; exit 2; }
out=$1 rounds=$2
shift 2
idle=${IDLE:-busy} tcore=${TARGET_CORE:-0} pcore=${PERF_CORE:-1}
port=4600
tck=$(getconf CLK_TCK)
mkdir -p "$out"
: > "$out/ab.jsonl"

ticks() {   # ticks PID COMM: user+system clock ticks of that thread (0 if none)
  local t
  t=$(grep -lx "$2" /proc/"$1"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5)
  [ -n "$t" ] && awk '{print $14 + $15}' /proc/"$1"/task/"$t"/stat || echo 0
}

one() {   # one ROUND BIN JOURNAL
  local bin=$2 srv r0 s0 r1 s1 q32 q1
  rm -rf "$out/data"
  mkdir -p "$out/data"
  cat > "$out/ab.toml" <<T
[service]
data_dir = "$out/data"
rpc_socket = "$out/rewind.sock"
sync_core = $tcore

[[listeners]]
address = "127.0.0.1"
port = $port

[[volumes]]
name = "v"
device = "ram"
size = "1GiB"
journal = $3
T
  taskset -c "$tcore" "$bin" serve --config "$out/ab.toml" --cores "$tcore" --idle "$idle" \
    > "$out/serve.out" 2> "$out/serve.log" &
  srv=$!
  for _ in $(seq 1 300); do
    grep -q '^ready:' "$out/serve.out" 2>/dev/null && break
    sleep 0.1
  done
  r0=$(ticks $srv reactor-0); s0=$(ticks $srv rewind-sync)
  q32=$(taskset -c "$pcore" "$bin" perf --nqn nqn.2026-11.io.rewind:v --port $port --cores "$pcore" \
    --json --rw randwrite --qd 32 --bs 4096 --size 256MiB --time 5)
  r1=$(ticks $srv reactor-0); s1=$(ticks $srv rewind-sync)
  q1=$(taskset -c "$pcore" "$bin" perf --nqn nqn.2026-11.io.rewind:v --port $port --cores "$pcore" \
    --json --rw randwrite --qd 1 --bs 4096 --size 256MiB --time 3 --warmup 1)
  kill -TERM $srv
  wait $srv 2>/dev/null || true
  port=$((port + 1))
  python3 - "$q32" "$q1" "$r0" "$r1" "$s0" "$s1" "$tck" "$bin" "$3" "$1" >> "$out/ab.jsonl" <<'P'
import json, sys
q32, q1 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r0, r1, s0, s1, tck = map(int, sys.argv[3:8])
us = 1e6 / tck / q32["ios"]
l = q1["latency_us"]
print(json.dumps(dict(bin=sys.argv[8], journal=sys.argv[9] == "true", round=int(sys.argv[10]),
    iops32=q32["iops"], reactor_us=(r1 - r0) * us, sync_us=(s1 - s0) * us,
    errors=q32["errors"]["total"] + q1["errors"]["total"],
    qd1_mean=l["mean"], qd1_p50=l["p50"], qd1_p99=l["p99"], qd1_max=l["max"])))
P
}

for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    one "$round" "$bin" true
    one "$round" "$bin" false
  done
done

python3 - "$out/ab.jsonl" "$@" <<'P'
import json, sys, statistics as st
rs = [json.loads(l) for l in open(sys.argv[1])]
for b in sys.argv[2:]:
    for j in (True, False):
        s = [r for r in rs if r["bin"] == b and r["journal"] == j]
        med = lambda k: st.median(r[k] for r in s)
        print("%s %s: median QD32 %d IOPS, reactor %.2f us + sync %.2f us per write; "
              "QD1 mean %.2f p50 %.2f p99 %.2f us; errors %d" % (
              b, "journaled" if j else "plain", med("iops32"), med("reactor_us"), med("sync_us"),
              med("qd1_mean"), med("qd1_p50"), med("qd1_p99"), sum(r["errors"] for r in s)))
    by = {}
    for r in rs:
        if r["bin"] == b:
            by.setdefault(r["round"], {})[r["journal"]] = r
    print("%s on/off per round: QD32 IOPS %s; QD1 mean %s" % (b,
          " ".join("%.2f" % (v[True]["iops32"] / v[False]["iops32"]) for v in by.values()),
          " ".join("%.2f" % (v[True]["qd1_mean"] / v[False]["qd1_mean"]) for v in by.values())))
P
