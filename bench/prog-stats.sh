# Sourced by bench/cost-ab.sh and bench/mmap-modes.sh: a measuring session, and the kernel's
# statistics of the BPF programs one process holds (needs bpftool and cc).

# Start a session: kernel.bpf_stats_enabled on, a scratch directory in $dir with the bench's
# helpers (xtask/src/bench/helpers.c) built in it, and, when the script exits for any reason,
# every pid in the array $tracers stopped with SIGINT (as a user stops leaktracer), the
# statistics off again and the directory removed.
start_session() {
    dir=$(mktemp -d)
    tracers=()
    trap end_session EXIT
    sysctl -qw kernel.bpf_stats_enabled=1
    cc -O2 -o "$dir/helpers" "$(dirname "${BASH_SOURCE[0]}")/../xtask/src/bench/helpers.c"
}

end_session() {
    for p in "${tracers[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    sysctl -qw kernel.bpf_stats_enabled=0
    rm -rf "$dir"
}

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
