#!/usr/bin/env bash
# A/B cost per event of two leaktracer builds, with the floor measured in the same conditions.
#
#   bench/cost-ab.sh /tmp/lt-base target/release/leaktracer [ROUNDS] > bench/results/cost-ab-DATE.md
#
# Each round measures, back to back, the base binary, the new binary and bench/floor.bt (an
# empty bpftrace program on each of the same hooks), the order reversed every other round so
# that a change in the machine's load hits both builds alike. Each measurement runs one
# tracer pinned to CPU 0 (`record --max-overhead 0`: no hook is paused) and the stress-ng
# storms (vm page faults, malloc/madvise, brk: stress-ng; mmap: xtask/src/bench/helpers.c
# `mmap lazy`, see xtask/src/bench/storms.rs for why not stress-ng's) pinned to CPU 1, and reads the kernel's
# statistics for that tracer's programs only (run_time_ns and run_cnt in the fdinfo of the
# program fds the tracer holds, with kernel.bpf_stats_enabled=1). What a build's own work costs
# per event is its ns per run minus the floor's in the same round: the floor is mostly the
# kernel's bookkeeping for these statistics (two clock reads per run), which no program can
# avoid. Root; needs stress-ng, bpftrace and bpftool. STORM_SECS (default 5) sets each storm's
# length. STEPS=1 also measures bench/cost-steps.bt each round (the floor plus one helper call,
# plus one hash-map lookup): what each kind of work costs here. The raw figures go to stderr as
# they come, the Markdown report to stdout.
# No -e: a probe of /proc racing a process that opens or closes fds must not end the run.
set -uo pipefail
BASE=$1 NEW=$2 ROUNDS=${3:-3}
STORM_SECS=${STORM_SECS:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/prog-stats.sh
. "$HERE/prog-stats.sh"
start_session

# How many BPF programs the process $1 holds (fds come and go while it attaches: never fail).
prog_fds() { { ls -l /proc/"$1"/fd 2>/dev/null || true; } | grep -c 'anon_inode:bpf-prog' || true; }

# measure LABEL ROUND: start the tracer, wait for its programs, run the storms, print
# "LABEL ROUND LOAD1 prog runs ns_per_run" lines.
measure() {
    local label=$1 round=$2 want
    case $label in
        floor) taskset -c 0 bpftrace "$HERE/floor.bt" >/dev/null 2>&1 & want=6 ;;
        steps) taskset -c 0 bpftrace "$HERE/cost-steps.bt" >/dev/null 2>&1 & want=2 ;;
        base) taskset -c 0 "$BASE" record --max-overhead 0 -i 1s -o "$dir/$round-base.jsonl" >/dev/null 2>&1 & want=10 ;;
        new) taskset -c 0 "$NEW" record --max-overhead 0 -i 1s -o "$dir/$round-new.jsonl" >/dev/null 2>&1 & want=10 ;;
    esac
    tracer=$!
    tracers=("$tracer")
    # Attached when it holds its programs and they have stopped appearing (60 s at most).
    local last=-1 n
    for _ in $(seq 1 600); do
        n=$(prog_fds "$tracer")
        [ "$n" -ge "$want" ] && [ "$n" -eq "$last" ] && break
        last=$n
        sleep 0.1
    done
    sleep 1
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    snapshot "$tracer" >"$dir/a"
    for w in "--vm 1 --vm-bytes 128M" "--malloc 1" "--brk 1"; do
        # shellcheck disable=SC2086
        taskset -c 1 stress-ng $w -t "$STORM_SECS" -q || true
    done
    taskset -c 1 "$dir/helpers" mmap "$STORM_SECS" lazy >/dev/null || true
    snapshot "$tracer" >"$dir/b"
    kill -INT "$tracer"
    wait "$tracer" || true
    tracers=()
    join "$dir/a" "$dir/b" | awk -v l="$label" -v r="$round" -v load="$load" \
        '{ n = $5 - $3; t = $4 - $2; if (n > 1000) printf "%s %s %s %s %d %.1f\n", l, r, load, $1, n, t / n }'
}

for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then order="base new floor"; else order="floor new base"; fi
    if [ "${STEPS:-0}" = 1 ]; then order="$order steps"; fi
    for label in $order; do
        measure "$label" "$r" >"$dir/one"
        cat "$dir/one" >&2
        cat "$dir/one" >>"$dir/raw"
    done
done

python3 - "$dir/raw" "$BASE" "$NEW" "$ROUNDS" "$STORM_SECS" <<'EOF'
import statistics, sys, collections
raw, base, new, rounds, secs = sys.argv[1:]
ns = collections.defaultdict(dict)       # (label, prog) -> round -> ns/run
runs = collections.defaultdict(int)
load = collections.defaultdict(dict)     # label -> round -> load
full = {}                                # 15-character name -> leaktracer's full name
for line in open(raw):
    label, r, l, prog, n, v = line.split()
    # bpftrace's program names are the event's, cut to the kernel's 15 characters.
    short = prog[:15]
    if label in ("base", "new"):
        full[short] = prog
    prog = short
    ns[(label, prog)][r] = float(v)
    runs[(label, prog)] += int(n)
    load[label][r] = l
rs = [str(i) for i in range(1, int(rounds) + 1)]
print(f"# Cost per event, A/B: `{base}` (base) vs `{new}` (new)\n")
print(f"`bench/cost-ab.sh {base} {new} {rounds}`: {rounds} rounds; each round measures base, new "
      f"and the floor (bench/floor.bt) back to back, the order reversed every other round, each "
      f"under stress-ng vm, malloc and brk storms and a one-page mmap storm (helpers.c `mmap lazy`) of {secs} s each, pinned to CPU 1 with the tracer "
      f"on CPU 0 (`record --max-overhead 0`). ns per run = run_time_ns / run_cnt of the tracer's "
      f"own programs (kernel.bpf_stats_enabled=1). Above the floor = ns per run minus the empty "
      f"program's on the same hook in the same round; the median over rounds.\n")
print("Load average (1 min) when each measurement started: " + " · ".join(
    f"round {r}: base {load['base'].get(r, '?')}, new {load['new'].get(r, '?')}, floor {load['floor'].get(r, '?')}"
    for r in rs) + (" (steps measured last in each round)" if any(l == "steps" for (l, _) in ns) else "") + "\n")
print("| program | base ns/run per round | new ns/run per round | floor per round | base above floor (median) | new above floor (median) | own work cut | new total (median) |")
print("|---|---|---|---|---|---|---|---|")
# The hooks the floor covers: the per-event programs the 100 ns target is about (the
# lifecycle programs run once per process, and only when something forks).
progs = sorted({p for (l, p) in ns if l in ("base", "new")} & {p for (l, p) in ns if l == "floor"})
def fmt(vals):
    return ", ".join("%.0f" % v if v is not None else "-" for v in vals)
for p in progs:
    name = full.get(p, p)
    b = [ns[("base", p)].get(r) for r in rs]
    n = [ns[("new", p)].get(r) for r in rs]
    f = [ns[("floor", p)].get(r) for r in rs]
    def above(xs):
        d = [x - y for x, y in zip(xs, f) if x is not None and y is not None]
        return statistics.median(d) if d else None
    ab, an = above(b), above(n)
    cut = "-" if ab in (None, 0) or an is None else "%.0f%%" % (100 * (1 - an / ab))
    nt = [x for x in n if x is not None]
    print(f"| {name} | {fmt(b)} | {fmt(n)} | {fmt(f)} | "
          f"{'-' if ab is None else '%.0f' % ab} | {'-' if an is None else '%.0f' % an} | {cut} | "
          f"{'-' if not nt else '%.0f' % statistics.median(nt)} |")
steps = sorted(p for (l, p) in ns if l == "steps")
if steps:
    what = {"sys_enter_madvi": "one bpf_get_current_pid_tgid",
            "sys_enter_munma": "one bpf_get_current_pid_tgid and one lookup of a per-process hash-map entry"}
    print("\nSteps above the floor (bench/cost-steps.bt, measured in each round like the floor):\n")
    print("| hook | what the program does | ns/run per round | above the floor (median) |")
    print("|---|---|---|---|")
    for p in steps:
        v = [ns[("steps", p)].get(r) for r in rs]
        f = [ns[("floor", p)].get(r) for r in rs]
        d = [x - y for x, y in zip(v, f) if x is not None and y is not None]
        print(f"| {p} | {what.get(p, '?')} | {fmt(v)} | {'-' if not d else '%.0f' % statistics.median(d)} |")
print("\nRuns per measurement (summed over rounds): " + ", ".join(
    f"{full.get(p, p)} base {runs[('base', p)]:,} new {runs[('new', p)]:,}" for p in progs) + ".")
EOF
