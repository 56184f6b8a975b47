// allocbench: an allocation-heavy Go program for `cargo xtask bench`. After a line on stdin
// (so a tracer can attach first) it allocates and drops objects of 16 B .. 64 KiB in a loop
// for SECONDS (default 5), keeping a ring of 4096 live ones so the GC and the scavenger work,
// and prints "ops_per_sec N", "ops N", "cpu_secs S" and "wall_secs S". cpu_secs is the whole
// process's user + system time over the loop (GC and scavenger threads included): the bench
// divides ops by it, so time the program waits for a CPU does not count as slowness.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

func main() {
	secs := 5.0
	if len(os.Args) > 1 {
		if v, err := strconv.ParseFloat(os.Args[1], 64); err == nil {
			secs = v
		}
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(1)
	}
	live := make([][]byte, 4096)
	cpu0 := cpuSecs()
	rng := uint64(0x9e3779b97f4a7c15)
	ops := 0
	start := time.Now()
	limit := time.Duration(secs * float64(time.Second))
	for time.Since(start) < limit {
		for i := 0; i < 1024; i++ {
			rng ^= rng << 13
			rng ^= rng >> 7
			rng ^= rng << 17
			b := make([]byte, 16<<(rng%13))
			b[len(b)-1] = 1
			live[(rng>>8)%4096] = b
			ops++
		}
	}
	wall := time.Since(start).Seconds()
	cpu := cpuSecs() - cpu0
	fmt.Printf("ops_per_sec %.0f\nops %d\ncpu_secs %.6f\nwall_secs %.6f\n", float64(ops)/wall, ops, cpu, wall)
}

// cpuSecs: user + system CPU time of every thread of this process so far.
func cpuSecs() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
