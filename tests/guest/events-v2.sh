# leaktracer in a cgroup-v2 guest: `leaktracer record` must trace a memory.max OOM kill: the
# `oom_kill` record, and the cgroup's memory.events changes (`memcg` lines with max/oom/oom_kill);
# and a second leaker held above memory.high in /lt-high: throttled, never killed, it must show
# as memory.events `high`, direct reclaim (`reclaim` lines) and PSI stalls on the cgroup's own
# memory.pressure (`pressure` lines with scope /lt-high).
#
# Run by `cargo xtask test` through xtask/src/qemu (busybox sh in a QEMU guest booted from an
# initramfs; /init has mounted proc, sysfs, devtmpfs, cgroup2 at /sys/fs/cgroup and tracefs).
# Needs /bin/leaktracer and /bin/leaker in the guest. The host parses the console between the
# markers:
#   =====TRACE-BEGIN===== ... =====TRACE-END=====                the trace (JSON Lines)
#   =====TRACE-ERR-BEGIN===== ... =====TRACE-ERR-END=====        leaktracer's stderr
#   =====MEMORY-EVENTS-BEGIN===== ... =====MEMORY-EVENTS-END=====  the cgroup's memory.events
#   =====HIGH-EVENTS-BEGIN===== ... =====HIGH-EVENTS-END=====    /lt-high's memory.events
#   LEAKER-PID=<pid>   LEAKER-STATUS=<wait status, 137 = SIGKILL>   LEAKTRACER-STATUS=<code>
#   THROTTLED-PID=<pid>   THROTTLED-STATUS=<wait status, 0 = ran its 6 s>
# Exit code 0 when the trace has an `oom_kill` line (the host checks the details).
# Settings (prepend `NAME=value` lines to the script to change them):
LEAK_RATE_KIB=${LEAK_RATE_KIB:-16384}   # 16 MiB/s: a few seconds of visible growth before 64 MiB
DURATION=${DURATION:-15s}
CG=/sys/fs/cgroup/lt-test
CGH=/sys/fs/cgroup/lt-high

fail() { echo "GUEST-FAIL: $1"; exit "${2:-1}"; }
# A progress line with the guest's uptime (builtins only).
stamp() { read -r up _ < /proc/uptime; echo "T+${up}s $*"; }
# True when file $1 has a line containing $2. Shell builtins only: polling adds no exec/exit
# noise to what leaktracer sees.
has_line() {
    while IFS= read -r l; do case "$l" in *"$2"*) return 0 ;; esac; done 2>/dev/null < "$1"
    return 1
}
# wait_or_kill PID SECONDS: wait for PID; SIGINT it after SECONDS, SIGKILL 10 s later. Prints
# LEAKTRACER-STATUS=<code> (and a note when the watchdog had to act).
wait_or_kill() {
    ( sleep "$2"; echo "watchdog: SIGINT after $2 s" > /tmp/watchdog; kill -INT "$1" 2>/dev/null
      sleep 10; echo "watchdog: SIGKILL" >> /tmp/watchdog; kill -KILL "$1" 2>/dev/null ) &
    dog=$!
    wait "$1"
    echo "LEAKTRACER-STATUS=$?"
    kill $dog 2>/dev/null
    [ -f /tmp/watchdog ] && cat /tmp/watchdog
    return 0
}

grep -qw memory /sys/fs/cgroup/cgroup.controllers || fail "cgroup2 has no memory controller" 10
echo +memory > /sys/fs/cgroup/cgroup.subtree_control || fail "cannot enable +memory" 11
# Created before leaktracer starts, like a pod's cgroup on a node.
mkdir -p $CG && echo 64M > $CG/memory.max || fail "cannot create $CG with memory.max=64M" 12
echo "memory.max=$(cat $CG/memory.max)"
# memory.high throttles without killing; memory.max is set so the cgroup counts as limited
# (leaktracer watches the cgroups that limit its processes).
mkdir -p $CGH && echo 16M > $CGH/memory.high && echo 256M > $CGH/memory.max ||
    fail "cannot create $CGH with memory.high=16M" 13

leaktracer --log-level info record --output /tmp/t.jsonl --duration "$DURATION" 2> /tmp/t.err &
tracer=$!
# Ready once the session is up: the "seeded N existing processes" log line, or a line after the
# header in the trace (BPF load and verification take a while under TCG).
i=0
until has_line /tmp/t.err "seeded" || has_line /tmp/t.jsonl '"type":"process"'; do
    if ! kill -0 $tracer 2>/dev/null; then
        wait $tracer
        echo "leaktracer exited early with status $?"
        echo "=====TRACE-ERR-BEGIN====="; cat /tmp/t.err; echo "=====TRACE-ERR-END====="
        exit 20
    fi
    i=$((i + 1))
    [ $i -ge 240 ] && { cat /tmp/t.err; fail "leaktracer did not start within 60 s" 21; }
    sleep 0.25
done
stamp "leaktracer started"
sleep 1

# Runs 6 s at the same rate, held at 16 MiB by memory.high (no swap: nothing to reclaim, so
# the kernel makes it sleep).
sh -c "echo \$\$ > $CGH/cgroup.procs && exec leaker $LEAK_RATE_KIB 6" &
throttled=$!
echo "THROTTLED-PID=$throttled"
# The leaker enters the cgroup before exec: the pid stays the same.
sh -c "echo \$\$ > $CG/cgroup.procs && exec leaker $LEAK_RATE_KIB" &
leaker=$!
echo "LEAKER-PID=$leaker"
wait $leaker
echo "LEAKER-STATUS=$?"
stamp "leaker ended"
wait $throttled
echo "THROTTLED-STATUS=$?"
stamp "throttled leaker ended"

# leaktracer stops by itself after $DURATION; the watchdog only acts if it overstays.
wait_or_kill $tracer 90
stamp "leaktracer ended"

echo "=====MEMORY-EVENTS-BEGIN====="; cat $CG/memory.events; echo "=====MEMORY-EVENTS-END====="
echo "=====HIGH-EVENTS-BEGIN====="; cat $CGH/memory.events $CGH/memory.pressure; echo "=====HIGH-EVENTS-END====="
echo "=====TRACE-ERR-BEGIN====="; cat /tmp/t.err; echo "=====TRACE-ERR-END====="
echo "=====TRACE-BEGIN====="; cat /tmp/t.jsonl; echo "=====TRACE-END====="
grep -q '"type":"oom_kill"' /tmp/t.jsonl || fail "no oom_kill line in the trace" 30
