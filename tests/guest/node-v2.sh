# leaktracer in a cgroup-v2 guest: zombie memory cgroups. ZOMBIES child cgroups of /ltz each get
# a process that writes 256 KiB to a file (charged to the child) and are removed; the files keep
# them held by the kernel (nr_dying_descendants). `leaktracer record` must count them against
# the kernel's own count, name them (cgroup rmdir records under /ltz), judge the count growing,
# and see them freed (cgroup release records) once the files are deleted.
#
# Run by `cargo xtask test` through xtask/src/qemu (busybox sh in a QEMU guest booted from an
# initramfs). Needs /bin/leaktracer. The host parses the console between the markers:
#   =====TRACE-BEGIN===== ... =====TRACE-END=====          the trace (JSON Lines)
#   =====TRACE-ERR-BEGIN===== ... =====TRACE-ERR-END=====  leaktracer's stderr
#   KERNEL-DYING=<nr_dying_descendants of the root after making the zombies>
#   KERNEL-DYING-FREED=<the same after deleting the files>
ZOMBIES=${ZOMBIES:-300}
CG=/sys/fs/cgroup/ltz

fail() { echo "GUEST-FAIL: $1"; exit "${2:-1}"; }
stamp() { read -r up _ < /proc/uptime; echo "T+${up}s $*"; }
has_line() {
    while IFS= read -r l; do case "$l" in *"$2"*) return 0 ;; esac; done 2>/dev/null < "$1"
    return 1
}
dying() {
    while read -r k v; do [ "$k" = nr_dying_descendants ] && echo "$v"; done < /sys/fs/cgroup/cgroup.stat
}

grep -qw memory /sys/fs/cgroup/cgroup.controllers || fail "cgroup2 has no memory controller" 10
echo +memory > /sys/fs/cgroup/cgroup.subtree_control || fail "cannot enable +memory" 11
mkdir -p $CG && echo +memory > $CG/cgroup.subtree_control || fail "cannot create $CG" 12
mkdir -p /tmp/ltz-files

leaktracer --log-level info record --interval 1s --output /tmp/t.jsonl --duration 600s 2> /tmp/t.err &
tracer=$!
i=0
until has_line /tmp/t.jsonl '"type":"node"'; do
    if ! kill -0 $tracer 2>/dev/null; then
        wait $tracer
        echo "leaktracer exited early with status $?"
        echo "=====TRACE-ERR-BEGIN====="; cat /tmp/t.err; echo "=====TRACE-ERR-END====="
        exit 20
    fi
    i=$((i + 1))
    [ $i -ge 240 ] && { cat /tmp/t.err; fail "leaktracer wrote no node record within 60 s" 21; }
    sleep 0.25
done
stamp "leaktracer started; $(dying) dying before"

n=0
while [ $n -lt "$ZOMBIES" ]; do
    mkdir $CG/z$n || fail "mkdir $CG/z$n" 30
    sh -c "echo \$\$ > $CG/z$n/cgroup.procs && exec dd if=/dev/zero of=/tmp/ltz-files/f$n bs=64k count=4 2>/dev/null" ||
        fail "writing from $CG/z$n" 31
    rmdir $CG/z$n || fail "rmdir $CG/z$n" 32
    n=$((n + 1))
    # A series that rises over many intervals, even if the guest runs fast.
    [ $((n % 20)) -eq 0 ] && sleep 1
done
stamp "made $ZOMBIES zombies"
# Time for the verdict: the count stays up while leaktracer samples it.
sleep 8
echo "KERNEL-DYING=$(dying)"
rm -rf /tmp/ltz-files
i=0
while [ "$(dying)" -gt 0 ] && [ $i -lt 40 ]; do sleep 0.5; i=$((i + 1)); done
sleep 3
echo "KERNEL-DYING-FREED=$(dying)"
kill -INT $tracer
wait $tracer
echo "LEAKTRACER-STATUS=$?"
stamp "leaktracer ended"
echo "=====TRACE-ERR-BEGIN====="; cat /tmp/t.err; echo "=====TRACE-ERR-END====="
echo "=====TRACE-BEGIN====="; cat /tmp/t.jsonl; echo "=====TRACE-END====="
