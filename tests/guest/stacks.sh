# leaktracer's growth-site programs on this guest's kernel: `leaktracer profile` of a leaker
# must load and attach the page-fault, mmap and brk stack programs (the verifier of each
# kernel the guests boot) and sample both kinds of growth: the leaker mallocs 800 KiB blocks
# (above glibc's mmap threshold: each an mmap of its own) and writes them.
#
# Run by `cargo xtask test` through xtask/src/qemu. Needs /bin/leaktracer and /bin/leaker in
# the guest. The host parses the console between the markers:
#   =====PROFILE-JSON-BEGIN===== ... =====PROFILE-JSON-END=====  `profile --format json`
#   =====PROFILE-ERR-BEGIN===== ... =====PROFILE-ERR-END=====    leaktracer's stderr
#   LEAKER-PID=<pid>   LEAKTRACER-STATUS=<code>
# Exit code 0 when leaktracer exited 0 and printed its JSON line (the host checks the counts).
LEAK_RATE_KIB=${LEAK_RATE_KIB:-8192}   # 8 MiB/s: 800 KiB blocks, 10 a second
DURATION=${DURATION:-4s}

fail() { echo "GUEST-FAIL: $1"; exit "${2:-1}"; }

leaker $LEAK_RATE_KIB 30 &
leaker=$!
echo "LEAKER-PID=$leaker"
leaktracer profile --pid $leaker --duration $DURATION --output /tmp/growth.pb.gz \
    --format json > /tmp/profile.json 2> /tmp/profile.err
echo "LEAKTRACER-STATUS=$?"
kill $leaker 2>/dev/null
echo "=====PROFILE-ERR-BEGIN====="; cat /tmp/profile.err; echo "=====PROFILE-ERR-END====="
echo "=====PROFILE-JSON-BEGIN====="; cat /tmp/profile.json; echo "=====PROFILE-JSON-END====="
grep -q '^{' /tmp/profile.json || fail "leaktracer printed no JSON line" 30
