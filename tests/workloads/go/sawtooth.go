// sawtooth: a healthy Go program. It keeps a fixed 32 MiB working set and churns garbage
// fast, so the heap climbs to the GC goal and drops back, over and over: busy, not leaking.
package main

import (
	"runtime/debug"
	"time"
)

func main() {
	debug.SetGCPercent(200)
	// The live set is written page by page, so it is resident (an untouched allocation is
	// only address space), and one page of it is read and written every tick, so it stays
	// reachable (Go's liveness analysis would let the GC free a slice no longer used) and in
	// RSS for the whole run.
	live := make([][]byte, 32)
	for i := range live {
		live[i] = make([]byte, 1<<20)
		for j := 0; j < len(live[i]); j += 4096 {
			live[i][j] = byte(i)
		}
	}
	var sink []byte
	tick := time.NewTicker(10 * time.Millisecond)
	n := 0
	for range tick.C {
		n++
		page := live[n%len(live)]
		page[(n*4096)%len(page)]++
		for i := 0; i < 16; i++ {
			sink = make([]byte, 128<<10)
			for j := 0; j < len(sink); j += 4096 {
				sink[j] = byte(j)
			}
		}
		// Return freed memory to the OS now and then, like the scavenger under pressure.
		if time.Now().UnixNano()%50 == 0 {
			debug.FreeOSMemory()
		}
	}
	_ = sink
}
