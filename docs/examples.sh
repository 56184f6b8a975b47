#!/usr/bin/env bash
# Regenerates the README's `top` and `report` examples on this machine, with real workloads
# (root; after `cargo xtask build`). Prints both; writes docs/report-example.svg.
#
#   top:    the Go workloads of tests/workloads/go, started 40 s before
#           `leaktracer top --once --duration 25s -n 6`
#   report: a C leaker and the same Go workloads, `leaktracer record -d 2m`, then
#           `leaktracer report TRACE --plot docs/report-example.svg -n 8`
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/leaktracer
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build -q -p tracer-user -p leaktracer-tests --bin leaker
for w in heapleak goroutineleak warmcache sawtooth; do
    GO111MODULE=off GOFLAGS= go build -o "$work/$w" "tests/workloads/go/$w.go"
done

start_workloads() {
    "$work/heapleak" 2048 >/dev/null & pids+=($!)
    "$work/goroutineleak" 2 >/dev/null & pids+=($!)
    # fills 96 MiB over 15 s, then serves from it: growth that levels off
    "$work/warmcache" 96 15 >/dev/null & pids+=($!)
    "$work/sawtooth" >/dev/null & pids+=($!)
}
stop_workloads() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== top (workloads started 40 s before)"
start_workloads
sleep 15
echo "# sudo leaktracer top --once --duration 25s -n 6"
"$bin" top --once --duration 25s -n 6
stop_workloads

echo "== report (2-minute recording)"
trace="$work/verdicts.jsonl"
"$bin" record -o "$trace" -d 2m &
rec=$!
for _ in $(seq 1 300); do grep -q '"type":"header"' "$trace" 2>/dev/null && break; sleep 0.1; done
target/debug/leaker 1024 >/dev/null & pids+=($!)
start_workloads
wait "$rec"
stop_workloads
echo "\$ leaktracer report verdicts.jsonl --plot docs/report-example.svg -n 8"
"$bin" report "$trace" --plot docs/report-example.svg -n 8
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
