#!/usr/bin/env python3
"""Does leaktracer's own measure of its programs' cost agree with the kernel's?

The overhead budget prices each hook with the programs' self-timing: one run in 32 of each
hook's programs is timed with bpf_ktime_get_ns (map HOOK_TIME, see
tracer-user/src/kernel/run_time.rs); the kernel's BPF statistics are never turned on. This
script turns them on (kernel.bpf_stats_enabled=1, restored at exit) and, under each stress-ng
storm (on CPU 1, budget at 50% so nothing is paused), compares over the same seconds:
  - ns per run of each hook, by the self-timing (HOOK_TIME) and by the kernel (run_time_ns /
    run_cnt of the hook's programs);
  - the total: the self-timing's estimate (timed ns x 32, plus the unpausable programs, timed
    at every run) against the kernel's run time of every program leaktracer holds.
The kernel's figures include its own bookkeeping (two clock reads per run), so they read
higher. As root, on a quiet machine:
    bench/self-timing-check.py target/release/leaktracer [OUT.md]
"""
import json
import os
import subprocess
import sys
import time

TIME_EVERY = 32
HOOKS = ["madvise", "munmap", "mmap", "brk", "rss", "stacks"]  # HOOK_* order
UNPAUSABLE = 6
PROGRAMS = {  # bpftool names them in full with BTF, cut at 15 characters without
    "sys_enter_madvise": "madvise",
    "sys_enter_munmap": "munmap",
    "sys_enter_mmap": "mmap",
    "sys_exit_mmap": "mmap",
    "sys_enter_mremap": "mmap",
    "sys_exit_mremap": "mmap",
    "sys_exit_brk": "brk",
    "rss_stat": "rss",
    "rss_stat_raw": "rss",
}
PROGRAMS.update({name[:15]: hook for name, hook in list(PROGRAMS.items())})
STORMS = ["--brk 1", "--malloc 1", "--mmap 1", "--vm 1 --vm-bytes 128M --vm-madvise nohugepage"]
SECS = int(os.environ.get("SECS", "20"))
SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def bpftool(*args):
    return json.loads(subprocess.check_output(["bpftool", *args, "-j"]))


def held_ids(pid, key):
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            for line in open(f"/proc/{pid}/fdinfo/{fd}"):
                if line.startswith(key + ":"):
                    ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def le(values, offset):
    return int.from_bytes(bytes(int(b, 16) for b in values[offset:offset + 8]), "little")


def snapshot(pid, time_map):
    """(per index: (ns, timed runs) summed over CPUs), (per program name: (run_time_ns, run_cnt))"""
    timed = {}
    for e in bpftool("map", "dump", "id", str(time_map)):
        idx = le(e["key"] + ["0x00"] * 4, 0) & 0xFFFFFFFF
        ns = sum(le(v["value"], 0) for v in e["values"])
        runs = sum(le(v["value"], 8) for v in e["values"])
        timed[idx] = (ns, runs)
    ids = held_ids(pid, "prog_id")
    progs = {}
    for p in bpftool("prog", "show"):
        if p["id"] in ids:
            a = progs.get(p["name"], (0, 0))
            progs[p["name"]] = (a[0] + p.get("run_time_ns", 0), a[1] + p.get("run_cnt", 0))
    return timed, progs


def main():
    binary = sys.argv[1]
    out = open(sys.argv[2], "w") if len(sys.argv) > 2 else sys.stdout
    before = open(SYSCTL).read().strip()
    open(SYSCTL, "w").write("1")
    trace = f"/tmp/self-timing-check-{os.getpid()}.jsonl"
    lt = subprocess.Popen([binary, "record", "--interval", "1s", "--max-overhead", "50%", "-o", trace],
                          stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        maps = held_ids(lt.pid, "map_id")
        time_map = next(m["id"] for m in bpftool("map", "show") if m["id"] in maps and m.get("name") == "HOOK_TIME")
        rows = []
        for storm in STORMS:
            st = subprocess.Popen(["taskset", "-c", "1", "stress-ng", *storm.split(), "-t", str(SECS + 4), "-q"])
            time.sleep(2)
            t0 = time.monotonic()
            a_timed, a_progs = snapshot(lt.pid, time_map)
            time.sleep(SECS)
            b_timed, b_progs = snapshot(lt.pid, time_map)
            dt = time.monotonic() - t0
            st.wait()
            d = lambda a, b, k: tuple(y - x for x, y in zip(a.get(k, (0, 0)), b.get(k, (0, 0))))
            kernel_total = sum(d(a_progs, b_progs, n)[0] for n in b_progs)
            self_total = sum(d(a_timed, b_timed, i)[0] * TIME_EVERY for i in range(len(HOOKS)))
            self_total += d(a_timed, b_timed, UNPAUSABLE)[0]
            per_hook = []
            for i, hook in enumerate(HOOKS):
                ns, timed = d(a_timed, b_timed, i)
                names = [n for n in b_progs if PROGRAMS.get(n) == hook]
                k_ns = sum(d(a_progs, b_progs, n)[0] for n in names)
                k_runs = sum(d(a_progs, b_progs, n)[1] for n in names)
                if k_runs >= 1000 and timed > 0:
                    per_hook.append(f"{hook} {ns / timed:.0f} / {k_ns / k_runs:.0f}")
            cpus = os.cpu_count()
            rows.append(f"| stress-ng {storm} | {'; '.join(per_hook)} | {self_total / (dt * 1e9 * cpus) * 100:.2f}% "
                        f"| {kernel_total / (dt * 1e9 * cpus) * 100:.2f}% | {self_total / kernel_total:.2f} |")
        print(f"Over {SECS} s of each storm on CPU 1 of {os.cpu_count()}, load average before: "
              f"{open('/proc/loadavg').read().split()[0]}.\n", file=out)
        print("| storm | ns per run, self-timed / kernel bpf_stats | share of the node, self-timed "
              "| kernel bpf_stats | ratio |", file=out)
        print("|---|---|---|---|---|", file=out)
        for r in rows:
            print(r, file=out)
    finally:
        lt.send_signal(2)
        lt.wait()
        open(SYSCTL, "w").write(before)
        try:
            os.remove(trace)
        except OSError:
            pass


if __name__ == "__main__":
    main()
