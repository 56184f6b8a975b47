#!/usr/bin/env bash
# What the mmap exit costs depending on what the process did just before it.
#
#   bench/mmap-modes.sh BIN [BIN...] [ROUNDS=N]  > bench/results/mmap-modes-DATE.md
#
# For each leaktracer binary in turn, `record --max-overhead 0` and bench/floor.bt (the empty
# program on the same hooks) run together pinned to CPU 0, while xtask/src/bench/helpers.c's
# one-page mmap storm runs on CPU 1 for 3 s in each mode: bare (mmap + munmap, no page ever
# allocated), lazy (mmap, write, munmap: the page allocated at the write, as allocators do) and
# populate (MAP_POPULATE: the page allocated inside mmap). Prints ns per run of sys_exit_mmap
# (run_time_ns / run_cnt, kernel.bpf_stats_enabled=1) for leaktracer and the empty program, per
# round, and the median. Root; needs bpftrace, bpftool and cc.
set -uo pipefail
ROUNDS=${ROUNDS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/prog-stats.sh
. "$HERE/prog-stats.sh"
start_session

# "run_time_ns run_cnt" of the sys_exit_mmap program process $1 holds.
mmap_exit() { snapshot "$1" | awk '$1 == "sys_exit_mmap" {print $2, $3}'; }

echo "| binary | mode | leaktracer ns/run per round | median | empty program per round | median |"
echo "|---|---|---|---|---|---|"
for bin in "$@"; do
    taskset -c 0 "$bin" record --max-overhead 0 -i 1s -o "$dir/t.jsonl" >/dev/null 2>&1 &
    lt=$!
    taskset -c 0 bpftrace "$HERE/floor.bt" >/dev/null 2>&1 &
    bt=$!
    tracers=("$lt" "$bt")
    for _ in $(seq 1 100); do
        [ -n "$(mmap_exit "$lt")" ] && [ -n "$(mmap_exit "$bt")" ] && break
        sleep 0.2
    done
    sleep 2
    for mode in bare lazy populate; do
        l=() f=()
        for _ in $(seq 1 "$ROUNDS"); do
            read -r lt0 lc0 <<<"$(mmap_exit "$lt")"
            read -r ft0 fc0 <<<"$(mmap_exit "$bt")"
            taskset -c 1 "$dir/helpers" mmap 3 "$mode" >/dev/null
            read -r lt1 lc1 <<<"$(mmap_exit "$lt")"
            read -r ft1 fc1 <<<"$(mmap_exit "$bt")"
            l+=("$(awk -v a="$lt0" -v b="$lt1" -v c="$lc0" -v d="$lc1" 'BEGIN{printf "%.0f", (b-a)/(d-c)}')")
            f+=("$(awk -v a="$ft0" -v b="$ft1" -v c="$fc0" -v d="$fc1" 'BEGIN{printf "%.0f", (b-a)/(d-c)}')")
        done
        med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
        echo "| \`$bin\` | $mode | ${l[*]} | $(med "${l[@]}") | ${f[*]} | $(med "${f[@]}") |"
    done
    kill -INT "$lt" "$bt"
    wait "$lt" "$bt" 2>/dev/null
    tracers=()
done
