#!/usr/bin/env bash
# How far untraced workload runs seconds apart disagree, with and without what the bench fixes
# for every run: the address-space layout (`setarch -R`) and stress-ng's random seed
# (`--seed 1`). Prints each run's bogo-ops per usr+sys second, alternating the two settings.
#
#   bench/layout-noise.sh > bench/results/layout-noise-DATE.md     [RUNS=N]
#
# Needs stress-ng, setarch and taskset; pins to the last CPU, as the bench does.
set -euo pipefail
RUNS=${RUNS:-10}
cpu=$(($(nproc) - 1))
rate() { # STRESSOR SECS [PREFIX...] -- [EXTRA...]: one run's bogo-ops per usr+sys second
    local stressor=$1 secs=$2
    shift 2
    local prefix=()
    while [ "$1" != "--" ]; do prefix+=("$1"); shift; done
    shift
    "${prefix[@]}" taskset -c "$cpu" stress-ng --"$stressor" 1 "$@" -t "$secs" --metrics-brief 2>&1 |
        awk -v s="$stressor" '$4 == s && $5 + 0 > 0 && NF >= 10 {printf "%d", $NF; exit}'
}
spread() { sort -n | awk '{v[NR] = $1} END {printf "%d-%d (±%.1f%% of the median)", v[1], v[NR], 50 * (v[NR] - v[1]) / v[int((NR + 1) / 2)]}'; }
echo "# Untraced run-to-run spread with and without a fixed layout and seed ($(date -u +%F), $(uname -r))"
echo
echo "\`RUNS=$RUNS bench/layout-noise.sh\`; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg). Bogo-ops per usr+sys second, CPU $cpu."
echo
echo "| workload | setting | runs | range |"
echo "|---|---|---|---|"
measure() { # NAME STRESSOR SECS SETTING-A-PREFIX SETTING-A-EXTRA SETTING-B-PREFIX SETTING-B-EXTRA
    local name=$1 stressor=$2 secs=$3 a=() b=()
    for _ in $(seq 1 "$RUNS"); do
        # shellcheck disable=SC2086
        a+=("$(rate "$stressor" "$secs" $4 -- $5)")
        # shellcheck disable=SC2086
        b+=("$(rate "$stressor" "$secs" $6 -- $7)")
    done
    echo "| $name, ${secs}-s runs | $8 | ${a[*]} | $(printf '%s\n' "${a[@]}" | spread) |"
    echo "| $name, ${secs}-s runs | $9 | ${b[*]} | $(printf '%s\n' "${b[@]}" | spread) |"
}
measure "stress-ng brk" brk 1 "env" "" "setarch -R" "" "random layout per run" "setarch -R"
measure "stress-ng malloc" malloc 2 "setarch -R" "" "setarch -R" "--seed 1" "setarch -R, new seed per run" "setarch -R, --seed 1"
