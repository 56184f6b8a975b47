# Not a test of leaktracer: a reproduction of why it no longer turns the kernel's BPF run-time
# statistics on and off. Flipping kernel.bpf_stats_enabled (or BPF_ENABLE_STATS) flips a
# static key, which patches kernel text at every BPF dispatch site while programs run there.
# With leaktracer's programs attached and a page-fault storm in a memory cgroup, this loop
# flips it as fast as busybox can. Run with:
#   cargo xtask guest --script repro-bpf-stats-flips.sh
# Seen on 2026-12-05: the 6.1.0-56 guest survived 5,220 flips in 40 s; the 6.12.117 guest
# panicked after about 12 s ("Oops: int3" at bpf_trace_run2, "Kernel panic - not syncing"),
# the same oops CI met once in trace_call_bpf while leaktracer's own measurement windows
# flipped the key twice every five intervals. (Under QEMU TCG; whether real hardware with
# this kernel is affected is not known.)
SECS=${SECS:-40}
CG=/sys/fs/cgroup/lt-flips
echo +memory > /sys/fs/cgroup/cgroup.subtree_control
mkdir -p $CG && echo 64M > $CG/memory.max
leaktracer record --interval 1s --max-overhead 0 -o /tmp/t.jsonl 2> /tmp/err &
tracer=$!
sleep 8
cat /tmp/err
# Page faults in a loop: 128 MiB/s into a 64 MiB cgroup, OOM-killed and started again.
( end=$(( $(date +%s) + SECS )); while [ "$(date +%s)" -lt $end ]; do
    sh -c "echo \$\$ > $CG/cgroup.procs && exec leaker 131072 2"; done ) 2>/dev/null &
load=$!
n=0
end=$(( $(date +%s) + SECS ))
while [ "$(date +%s)" -lt $end ]; do
    echo 1 > /proc/sys/kernel/bpf_stats_enabled
    echo 0 > /proc/sys/kernel/bpf_stats_enabled
    n=$((n + 1))
done
echo "FLIPS=$n"
wait $load
kill -INT $tracer
wait $tracer
echo "SURVIVED $n flips in $SECS s"
