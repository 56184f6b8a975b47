# leaktracer in a cgroup-v2 guest: `leaktracer oom --format json` must report a memory.max OOM
# kill with the victim's v2 cgroup path and limit.
#
# Run by `cargo xtask test` through xtask/src/qemu (busybox sh in a QEMU guest booted from an
# initramfs; /init has mounted proc, sysfs, devtmpfs, cgroup2 at /sys/fs/cgroup and tracefs).
# Needs /bin/leaktracer and /bin/leaker in the guest. The host parses the console between the
# markers:
#   =====OOM-JSON-BEGIN===== ... =====OOM-JSON-END=====        leaktracer's stdout (JSON Lines)
#   =====OOM-ERR-BEGIN===== ... =====OOM-ERR-END=====          leaktracer's stderr
#   =====MEMORY-EVENTS-BEGIN===== ... =====MEMORY-EVENTS-END=====  the cgroup's memory.events
#   LEAKER-PID=<pid>   LEAKER-STATUS=<wait status, 137 = SIGKILL>
# Expected record: pid = comm "leaker" = LEAKER-PID, trigger_pid = LEAKER-PID, cgroup "/lt-test",
# cgroup_limit_bytes 67108864. Exit code 0 when leaktracer printed at least one JSON line.
# Settings (prepend `NAME=value` lines to the script to change them):
LEAK_RATE_KIB=${LEAK_RATE_KIB:-16384}   # 16 MiB/s: a few seconds of visible growth before 64 MiB
INTERVAL=${INTERVAL:-250ms}
CG=/sys/fs/cgroup/lt-test

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
mkdir -p $CG && echo 64M > $CG/memory.max || fail "cannot create $CG with memory.max=64M" 12
echo "memory.max=$(cat $CG/memory.max)"

leaktracer oom --format json --interval "$INTERVAL" > /tmp/oom.jsonl 2> /tmp/oom.err &
tracer=$!
# Ready once it prints its start line (BPF load and verification take a while under TCG).
i=0
until has_line /tmp/oom.err "following OOM kills"; do
    if ! kill -0 $tracer 2>/dev/null; then
        wait $tracer
        echo "leaktracer exited early with status $?"
        echo "=====OOM-ERR-BEGIN====="; cat /tmp/oom.err; echo "=====OOM-ERR-END====="
        exit 20
    fi
    i=$((i + 1))
    [ $i -ge 240 ] && { cat /tmp/oom.err; fail "leaktracer did not start within 60 s" 21; }
    sleep 0.25
done
stamp "leaktracer started"

# The leaker enters the cgroup before exec: the pid stays the same.
sh -c "echo \$\$ > $CG/cgroup.procs && exec leaker $LEAK_RATE_KIB" &
leaker=$!
echo "LEAKER-PID=$leaker"
wait $leaker
echo "LEAKER-STATUS=$?"
stamp "leaker ended"
sleep 2

kill -INT $tracer
wait_or_kill $tracer 20
stamp "leaktracer ended"

echo "=====MEMORY-EVENTS-BEGIN====="; cat $CG/memory.events; echo "=====MEMORY-EVENTS-END====="
echo "=====OOM-ERR-BEGIN====="; cat /tmp/oom.err; echo "=====OOM-ERR-END====="
echo "=====OOM-JSON-BEGIN====="; cat /tmp/oom.jsonl; echo "=====OOM-JSON-END====="
grep -q '^{' /tmp/oom.jsonl || fail "leaktracer printed no JSON line" 30
