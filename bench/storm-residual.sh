#!/bin/bash
# What a syscall storm costs once the budget has paused the storming hook: stress-ng brk
# (pinned to CPU 1) untraced, then under `leaktracer record` (pinned to CPU 0) with the given
# options, $ROUNDS (default 3) alternating rounds of 5 s; prints bogo-ops per CPU-second of each run and the
# budget records of each traced run.
#   bench/storm-residual.sh target/release/leaktracer                        # default budget
#   bench/storm-residual.sh target/release/leaktracer --max-overhead 0.001%  # everything paused
# Run as root on a quiet machine.
set -eu
BIN=$1; shift
TRACE=$(mktemp --suffix=.jsonl)
ops() {
    taskset -c 1 stress-ng --brk 1 -t 5 --metrics-brief 2>&1 |
        awk '$4=="brk" && $5 ~ /^[0-9]+$/ {printf "%.0f", $5/($7+$8)}'
}
for r in $(seq "${ROUNDS:-3}"); do
    u=$(ops)
    taskset -c 0 "$BIN" record --output "$TRACE" "$@" 2>/dev/null &
    lt=$!
    sleep 2
    t=$(ops)
    kill -INT $lt
    wait $lt
    echo "round $r: untraced $u traced $t ratio $(awk "BEGIN{printf \"%.3f\", $t/$u}")"
    grep '"type":"budget"' "$TRACE" | cut -c1-160
done
rm -f "$TRACE"
