#!/usr/bin/env bash
# Soak test (issue 6): runs the `http` and `kv` examples under wrk and
# redis-benchmark, and the randomized echo stress test, for N minutes
# (default 5), sampling every process's resident memory (VmRSS) and open
# descriptors once a second. Fails if, after the warm-up, a server's RSS grows
# beyond a small bound, or if a server holds more descriptors once the load is
# gone than it did before the load began.
#
#   tests/soak.sh [minutes]          # default 5
#
# Samples go to target/soak/samples.csv (seconds since the load began,
# process, rss_kib, fds; one row per process and second), the
# summary to target/soak/summary.txt. Servers are pinned to core 0, load
# generators and the stress test to core 1.
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES="${1:-5}"
SECS=$((MINUTES * 60))
# Warm-up: the first tenth of the run, at least 10 s. RSS may grow while the
# allocator and the kernel's socket buffers reach their working set.
WARM=$((SECS / 10))
if [ "$WARM" -lt 10 ]; then WARM=10; fi
# Allowed RSS growth after the warm-up: 10% plus 2 MiB.
OUT=target/soak
mkdir -p "$OUT"

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2" >&2
    if ! apt-get install -y -q "$2" >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q "$2" >/dev/null
    fi
}
need wrk wrk
need redis-benchmark redis-tools

cargo build --release -q -p examples --example http --example kv
STRESS_BIN=$(cargo test --release -q -p integration-tests --test stress --no-run \
    --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$STRESS_BIN" ] || { echo "cannot build the stress test" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)" || true
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 100); do
        if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server on port $1 did not start" >&2
    exit 1
}

HTTP_PORT=$(free_port)
taskset -c 0 target/release/examples/http "127.0.0.1:$HTTP_PORT" >/dev/null &
HTTP_PID=$!
PIDS+=("$HTTP_PID")
KV_PORT=$(free_port)
taskset -c 0 target/release/examples/kv "127.0.0.1:$KV_PORT" >/dev/null &
KV_PID=$!
PIDS+=("$KV_PID")
wait_port "$HTTP_PORT"
wait_port "$KV_PORT"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

HTTP_FDS_IDLE=$(fds "$HTTP_PID")
KV_FDS_IDLE=$(fds "$KV_PID")

echo "soak: ${MINUTES} min (warm-up ${WARM} s); http :$HTTP_PORT, kv :$KV_PORT" >&2
taskset -c 1 wrk -t1 -c100 -d"${SECS}s" "http://127.0.0.1:$HTTP_PORT/" \
    >"$OUT/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
taskset -c 1 redis-benchmark -p "$KV_PORT" -t set,get,incr -c 50 -P 4 -r 10000 \
    -l -q >/dev/null 2>&1 &
RB_PID=$!
PIDS+=("$RB_PID")
# The stress test runs client and server runtimes in one process; it checks
# its own exchanges and descriptors at the end.
STRESS_SECS=$SECS taskset -c 1 "$STRESS_BIN" --nocapture >"$OUT/stress.txt" 2>&1 &
STRESS_PID=$!
PIDS+=("$STRESS_PID")

echo "seconds,process,rss_kib,fds" >"$OUT/samples.csv"
START=$SECONDS
while [ $((SECONDS - START)) -lt "$SECS" ]; do
    sleep 1
    t=$((SECONDS - START))
    for pair in "http:$HTTP_PID" "kv:$KV_PID" "stress:$STRESS_PID"; do
        name=${pair%%:*}
        pid=${pair##*:}
        [ -d "/proc/$pid" ] || continue
        echo "$t,$name,$(rss "$pid"),$(fds "$pid")" >>"$OUT/samples.csv"
    done
done

kill "$RB_PID" 2>/dev/null || true
wait "$WRK_PID" || true
STRESS_RC=0
wait "$STRESS_PID" || STRESS_RC=$?
# Let the servers see the clients' FINs.
sleep 2
HTTP_FDS_END=$(fds "$HTTP_PID")
KV_FDS_END=$(fds "$KV_PID")

FAIL=0
{
    echo "soak of ${MINUTES} min, warm-up ${WARM} s, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)"
    for name in http kv stress; do
        awk -F, -v n="$name" -v w="$WARM" '
            $2 == n && $1 <= w { warm_rss = $3; warm_fds = $4 }
            $2 == n && $1 > w && $3 > max_rss { max_rss = $3 }
            $2 == n && !seen++ { first_rss = $3; first_fds = $4 }
            $2 == n { last_rss = $3; last_fds = $4; last_t = $1 }
            END {
                printf "%-6s rss_kib start %d, after warm-up %d, max after warm-up %d, end %d (t=%d s); fds start %d, after warm-up %d, end %d\n",
                    n, first_rss, warm_rss, max_rss, last_rss, last_t, first_fds, warm_fds, last_fds
            }' "$OUT/samples.csv"
    done
    echo "http fds idle before load $HTTP_FDS_IDLE, after load $HTTP_FDS_END"
    echo "kv   fds idle before load $KV_FDS_IDLE, after load $KV_FDS_END"
    grep -E "Requests/sec|requests in" "$OUT/wrk.txt" || true
    grep -oE "stress( summary)?: .*" "$OUT/stress.txt" || true
    echo "stress test exit code $STRESS_RC"
} | tee "$OUT/summary.txt"

for name in http kv; do
    if ! awk -F, -v n="$name" -v w="$WARM" '
        $2 == n && $1 <= w { warm = $3 }
        $2 == n && $1 > w && $3 > max { max = $3 }
        END { exit !(max <= warm * 1.10 + 2048) }' "$OUT/samples.csv"; then
        echo "FAIL: $name RSS grew after the warm-up" >&2
        FAIL=1
    fi
done
if [ "$HTTP_FDS_END" -gt "$HTTP_FDS_IDLE" ] || [ "$KV_FDS_END" -gt "$KV_FDS_IDLE" ]; then
    echo "FAIL: a server holds more descriptors after the load than before it" >&2
    FAIL=1
fi
if [ "$STRESS_RC" -ne 0 ]; then
    echo "FAIL: the stress test failed (see $OUT/stress.txt)" >&2
    FAIL=1
fi
[ "$FAIL" -eq 0 ] && echo "soak: PASS" >&2
exit "$FAIL"
