# Harness self-test (no leaktracer): the guest has cgroup v2 with the memory controller and a
# memory.max limit gives a real OOM kill. Needs /bin/leaker in the guest. Prints the cgroup's
# memory.events between =====MEMORY-EVENTS-BEGIN===== and =====MEMORY-EVENTS-END=====; exit code
# 0 when it shows oom_kill >= 1.
CG=/sys/fs/cgroup/lt-test
fail() { echo "GUEST-FAIL: $1"; exit "${2:-1}"; }

grep -qw memory /sys/fs/cgroup/cgroup.controllers || fail "cgroup2 has no memory controller" 10
echo +memory > /sys/fs/cgroup/cgroup.subtree_control || fail "cannot enable +memory" 11
mkdir -p $CG && echo 64M > $CG/memory.max || fail "cannot create $CG with memory.max=64M" 12
echo "memory.max=$(cat $CG/memory.max)"
# 64 MiB/s: OOM-killed about a second after the start. The pid stays the same across exec.
sh -c "echo \$\$ > $CG/cgroup.procs && exec leaker 65536" &
leaker=$!
wait $leaker
echo "LEAKER-STATUS=$?"
echo "=====MEMORY-EVENTS-BEGIN====="; cat $CG/memory.events; echo "=====MEMORY-EVENTS-END====="
n=$(sed -n 's/^oom_kill //p' $CG/memory.events)
[ "${n:-0}" -ge 1 ] || fail "no oom_kill in memory.events" 30
