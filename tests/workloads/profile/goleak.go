// A Go heap leak for the growth profiler: main.retain keeps 64 KiB slices, written to, at
// about 6 MiB/s (built stripped by tests/tests/profile.rs with several Go versions).
package main

import "time"

var kept [][]byte

//go:noinline
func retain(n int) {
	b := make([]byte, n)
	for i := 0; i < n; i += 4096 {
		b[i] = 1
	}
	kept = append(kept, b)
}

func main() {
	for len(kept) < 16384 {
		retain(64 << 10)
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Hour)
}
