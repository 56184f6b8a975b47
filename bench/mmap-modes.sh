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
# round, and the median. Where leaktracer also runs sys_enter_mmap, its figure is per call:
# the enter's ns per run plus the exit's, shown as "enter+exit=sum". A file BIN.env next to a
# binary holds environment settings (VAR=value, one per line) that binary runs with.
# Root; needs bpftrace, bpftool and cc.
set -uo pipefail
ROUNDS=${ROUNDS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/prog-stats.sh
. "$HERE/prog-stats.sh"
start_session

# "run_time_ns run_cnt" of the sys_exit_mmap program process $1 holds.
mmap_exit() { snapshot "$1" | awk '$1 == "sys_exit_mmap" {print $2, $3}'; }
# The same for sys_enter_mmap ("0 0" when it holds none).
mmap_enter() { snapshot "$1" | awk '$1 == "sys_enter_mmap" {r = $2 " " $3} END {print (r ? r : "0 0")}'; }
# ns per run between two "run_time_ns run_cnt" snapshots ("" when nothing ran).
per_run() { awk -v a="$1" -v b="$3" -v c="$2" -v d="$4" 'BEGIN{if (d > c) printf "%.0f", (b-a)/(d-c)}'; }

echo "| binary | mode | leaktracer ns per mmap call, per round | median | empty program per round | median |"
echo "|---|---|---|---|---|---|"
for bin in "$@"; do
    settings=()
    [ -f "$bin.env" ] && mapfile -t settings <"$bin.env"
    env "${settings[@]}" taskset -c 0 "$bin" record --max-overhead 0 -i 1s -o "$dir/t.jsonl" >/dev/null 2>&1 &
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
        l=() f=() shown=()
        for _ in $(seq 1 "$ROUNDS"); do
            read -r lt0 lc0 <<<"$(mmap_exit "$lt")"
            read -r et0 ec0 <<<"$(mmap_enter "$lt")"
            read -r ft0 fc0 <<<"$(mmap_exit "$bt")"
            taskset -c 1 "$dir/helpers" mmap 3 "$mode" >/dev/null
            read -r lt1 lc1 <<<"$(mmap_exit "$lt")"
            read -r et1 ec1 <<<"$(mmap_enter "$lt")"
            read -r ft1 fc1 <<<"$(mmap_exit "$bt")"
            exit_ns=$(per_run "$lt0" "$lc0" "$lt1" "$lc1")
            enter_ns=$(per_run "$et0" "$ec0" "$et1" "$ec1")
            if [ -n "$enter_ns" ]; then
                l+=("$((enter_ns + exit_ns))")
                shown+=("$enter_ns+$exit_ns=$((enter_ns + exit_ns))")
            else
                l+=("$exit_ns")
                shown+=("$exit_ns")
            fi
            f+=("$(per_run "$ft0" "$fc0" "$ft1" "$fc1")")
        done
        med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
        echo "| \`$bin\` | $mode | ${shown[*]} | $(med "${l[@]}") | ${f[*]} | $(med "${f[@]}") |"
    done
    kill -INT "$lt" "$bt"
    wait "$lt" "$bt" 2>/dev/null
    tracers=()
done
