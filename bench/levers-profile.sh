#!/bin/sh
# Where a server's CPU per HTTP request goes, counted by the kernel
# (issue 16; the `levers` scenario measures the CPU itself).
#
#   bench/levers-profile.sh [RATE] [SECS] [PEER...]
#
# For each peer (default: raw_http in every mode and variant of the levers
# scenario, named as there, e.g. multishot+fixed; tokio_http; ours), starts
# the server pinned to core 0, offers `h2load --h1 -c 50 --rps RATE/50 -D
# SECS` pinned to core 1 (RATE default 10000 req/s, SECS default 5), and
# counts with `perf stat -p` over h2load's run: the server's task-clock,
# its syscalls (all, and io_uring_enter, epoll_wait), and the io_uring
# tracepoints (requests submitted, polls armed, task work queued, local
# task-work runs, completions, failed links). Prints each count per HTTP
# request answered. With LEVERS_RECORD=DIR it first runs the same load
# under `perf record -g` (kernel and user) into DIR/<peer>.data, for
# `perf report -i DIR/<peer>.data`. Needs perf, h2load, curl, taskset and root (tracepoints).
# Build first: cargo build --release -p bench --bin raw_http --bin
# tokio_http && cargo build --release -p examples --example http.
set -eu
cd "$(dirname "$0")/.."

rate=${1:-10000}
secs=${2:-5}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
peers="$*"
if [ -z "$peers" ]; then
    peers="plain pollfirst link linkpf multishot plain+fixed multishot+fixed plain+coop tokio_http ours"
fi
conns=50
rps=$((rate / conns))
port=18431
events="task-clock,raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait,io_uring:io_uring_submit_req,io_uring:io_uring_poll_arm,io_uring:io_uring_task_add,io_uring:io_uring_local_work_run,io_uring:io_uring_complete,io_uring:io_uring_fail_link"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf '%-10s %8s %9s %8s %8s %8s %8s %8s %8s %8s %8s %8s\n' peer "req/s" "cpu_us" syscalls enter epoll_w submit poll_arm task_add lw_run complete fail_lnk
for peer in $peers; do
    case "$peer" in
    tokio_http) cmd="target/release/tokio_http" ;;
    ours) cmd="target/release/examples/http" ;;
    *)
        # mode[+fixed][+coop]
        cmd="target/release/raw_http --mode ${peer%%+*}"
        case "$peer" in *+fixed*) cmd="$cmd --fixed" ;; esac
        case "$peer" in *+coop*) cmd="$cmd --ring coop" ;; esac
        ;;
    esac
    port=$((port + 1))
    # shellcheck disable=SC2086 # $cmd is a command and its arguments
    taskset -c 0 $cmd "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
    pid=$!
    i=0
    while ! curl -s -o /dev/null "http://127.0.0.1:$port/"; do
        i=$((i + 1))
        if [ $i -gt 50 ]; then
            echo "$peer: did not start" >&2
            cat "$tmp/server.log" >&2
            kill "$pid" 2>/dev/null || true
            continue 2
        fi
        sleep 0.1
    done
    if [ -n "${LEVERS_RECORD:-}" ]; then
        mkdir -p "$LEVERS_RECORD"
        perf record -q -g -F 2999 -p "$pid" -o "$LEVERS_RECORD/$peer.data" -- \
            taskset -c 1 h2load --h1 -t 1 -c "$conns" -m 1 --rps "$rps" -D "$secs" \
            "http://127.0.0.1:$port/" >"$tmp/h2load" 2>&1 || true
    fi
    perf stat -x, -e "$events" -p "$pid" -o "$tmp/stat" -- \
        taskset -c 1 h2load --h1 -t 1 -c "$conns" -m 1 --rps "$rps" -D "$secs" \
        "http://127.0.0.1:$port/" >"$tmp/h2load" 2>&1 || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    done_n=$(sed -n 's/^requests: .* \([0-9]*\) done.*/\1/p' "$tmp/h2load")
    failed=$(sed -n 's/^requests: .* \([0-9]*\) failed.*/\1/p' "$tmp/h2load")
    if [ -z "$done_n" ] || [ "$done_n" -eq 0 ]; then
        echo "$peer: h2load answered nothing" >&2
        cat "$tmp/h2load" >&2
        continue
    fi
    awk -F, -v peer="$peer" -v n="$done_n" -v secs="$secs" -v failed="$failed" '
        $3 != "" { v[$3] = $1 }
        END {
            printf "%-10s %8.0f %9.2f", peer, n / secs, v["task-clock"] * 1000 / n
            split("raw_syscalls:sys_enter syscalls:sys_enter_io_uring_enter syscalls:sys_enter_epoll_wait io_uring:io_uring_submit_req io_uring:io_uring_poll_arm io_uring:io_uring_task_add io_uring:io_uring_local_work_run io_uring:io_uring_complete io_uring:io_uring_fail_link", k, " ")
            for (i = 1; i <= 9; i++) printf " %8.2f", v[k[i]] / n
            if (failed + 0 > 0) printf "  (%d failed)", failed
            printf "\n"
        }' "$tmp/stat"
done
