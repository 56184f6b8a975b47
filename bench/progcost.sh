#!/usr/bin/env bash
# Per-program cost of leaktracer's kernel programs under one workload, from the kernel's own
# statistics (bpf_stats): run count and nanoseconds per run of each program the tracer holds,
# read from its /proc/PID/fdinfo before and after the workload. Root; bpftool for names.
#
#   bash bench/progcost.sh target/debug/leaktracer 5 -- stress-ng --malloc 1 --timeout 5
#
# Prints the load average too: on a busy machine the figures are upper bounds.
set -euo pipefail
bin=$1 secs=$2
shift 3
dir=$(mktemp -d)
lt=
cleanup() {
    [ -n "$lt" ] && kill -INT "$lt" 2>/dev/null && wait "$lt" 2>/dev/null
    sysctl -qw kernel.bpf_stats_enabled=0
    rm -rf "$dir"
}
trap cleanup EXIT
sysctl -qw kernel.bpf_stats_enabled=1
"$bin" record -o "$dir/t.jsonl" -i 1s --max-overhead 0 2>/dev/null &
lt=$!
for _ in $(seq 1 300); do grep -q '"type":"header"' "$dir/t.jsonl" 2>/dev/null && break; sleep 0.1; done
snapshot() {
    for fd in /proc/$lt/fd/*; do
        [ "$(readlink "$fd")" = "anon_inode:bpf-prog" ] || continue
        info=/proc/$lt/fdinfo/$(basename "$fd")
        id=$(awk '/^prog_id/{print $2}' "$info")
        name=$(bpftool prog show id "$id" | awk 'NR == 1 {print $4}')
        echo "$name $(awk '/^run_time_ns/{print $2}' "$info") $(awk '/^run_cnt/{print $2}' "$info")"
    done | sort
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
snapshot >"$dir/a"
timeout "$secs" "$@" >/dev/null 2>&1 || true
snapshot >"$dir/b"
kill -INT "$lt"
wait "$lt" || true
lt=
join "$dir/a" "$dir/b" | awk '{ n = $5 - $3; t = $4 - $2; if (n > 0) printf "%-24s %10d runs %7.0f ns/run\n", $1, n, t / n }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
