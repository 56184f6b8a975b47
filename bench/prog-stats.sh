# Sourced by bench/cost-ab.sh and bench/mmap-modes.sh: the kernel's statistics of the BPF
# programs one process holds (kernel.bpf_stats_enabled=1; needs bpftool).

# "name run_time_ns run_cnt" of every BPF program the process $1 holds, sorted by name.
snapshot() {
    local fd info id name
    for fd in /proc/"$1"/fd/*; do
        [ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:bpf-prog" ] || continue
        info=/proc/$1/fdinfo/$(basename "$fd")
        id=$(awk '/^prog_id/{print $2}' "$info")
        name=$(bpftool prog show id "$id" | awk 'NR == 1 {print $4}')
        echo "$name $(awk '/^run_time_ns/{print $2}' "$info") $(awk '/^run_cnt/{print $2}' "$info")"
    done | sort
}
