#!/bin/bash
# Cost per event of each leaktracer program under stress-ng storms (vm, malloc, brk, mmap on
# CPU 1), by the kernel's BPF statistics, with the overhead budget off so no hook is paused.
# Compare two builds by running it for each, back to back, on a quiet machine (as root):
#   bench/cost-per-event.sh target/release/leaktracer
set -eu
BIN=$1; shift
TRACE=$(mktemp --suffix=.jsonl)
"$BIN" record --max-overhead 0 --interval 1s -o "$TRACE" "$@" 2>/dev/null &
lt=$!
sleep 4
sysctl -qw kernel.bpf_stats_enabled=1
for w in "--vm 1 --vm-bytes 128M" "--malloc 1" "--brk 1" "--mmap 1"; do
    # shellcheck disable=SC2086
    taskset -c 1 stress-ng $w -t 5 -q
done
bpftool prog show -j | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p.get("run_cnt", 0) > 1000:
        print("%-18s %6.0f ns  %9d runs" % (p.get("name"), p["run_time_ns"] / p["run_cnt"], p["run_cnt"]))'
sysctl -qw kernel.bpf_stats_enabled=0
kill -INT $lt
wait $lt
rm -f "$TRACE"
