#!/usr/bin/env bash
# Where the mmap exit's time goes: the shipped program against variants that each leave one
# part out, measured by bench/mmap-modes.sh (bare, lazy and MAP_POPULATE one-page storms).
#
#   bench/mmap-exit-breakdown.sh > bench/results/mmap-exit-breakdown-DATE.md   [ROUNDS=N]
#
# Each variant is a patch in bench/mmap-exit-variants/, applied to a scratch worktree of HEAD
# and built there (the checkout is never touched). The variants do not count correctly; they
# exist only to be timed:
#   1-no-run-counter       no run_hook: neither the run count nor the 1-in-32 self-timing
#   2-no-size-histogram    no mmap size histogram bucket
#   3-registers-not-loaded both helpers called, the argument registers not loaded
#   4-no-task-pt-regs      bpf_get_current_task_btf only: no bpf_task_pt_regs, no loads
#   5-pid-only             bpf_get_current_pid_tgid and return: the least a counting program does
#   6-count-at-enter       counted at sys_enter_mmap from the tracepoint's own fields (no
#                          registers), the exit only tests the return value; runs with the
#                          enter programs attached (6-count-at-enter.env), timed per call
# Root; needs what bench/mmap-modes.sh needs, and git and cargo.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
scratch=$(mktemp -d)
# One target directory across runs keeps the builds incremental.
export CARGO_TARGET_DIR="$REPO/target/mmap-exit-breakdown"
cleanup() {
    git -C "$REPO" worktree remove --force "$scratch/tree" >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT
git -C "$REPO" worktree add --detach "$scratch/tree" HEAD >/dev/null 2>&1

build() { # NAME: build the scratch tree as it stands into $scratch/NAME
    (cd "$scratch/tree" && cargo build --release -q -p tracer-user 2>"$scratch/build.log") || {
        cat "$scratch/build.log" >&2
        echo "mmap-exit-breakdown: building variant $1 failed" >&2
        exit 1
    }
    cp "$CARGO_TARGET_DIR/release/leaktracer" "$scratch/$1"
}

bins=()
build shipped
bins+=("$scratch/shipped")
for patch in "$HERE"/mmap-exit-variants/*.patch; do
    name=$(basename "$patch" .patch)
    git -C "$scratch/tree" checkout -q -- .
    git -C "$scratch/tree" apply "$patch" || {
        echo "mmap-exit-breakdown: $patch no longer applies to HEAD; update it" >&2
        exit 1
    }
    build "$name"
    # Environment the variant runs with (bench/mmap-modes.sh reads BIN.env).
    [ -f "${patch%.patch}.env" ] && cp "${patch%.patch}.env" "$scratch/$name.env"
    bins+=("$scratch/$name")
done

# The builds leave the load average high: wait (up to 5 minutes) for the 1-minute figure
# to fall under 0.5 before measuring, and print it either way.
for _ in $(seq 1 60); do
    awk '{exit !($1 < 0.5)}' /proc/loadavg && break
    sleep 5
done

echo "# The mmap exit, part by part ($(date -u +%F), $(uname -r), $(git -C "$REPO" rev-parse --short HEAD))"
echo
echo "Load average before measuring: $(cut -d' ' -f1-3 /proc/loadavg). Command: \`bench/mmap-exit-breakdown.sh\`, ROUNDS=${ROUNDS:-3}."
echo
"$HERE/mmap-modes.sh" "${bins[@]}" | sed "s|$scratch/||"
