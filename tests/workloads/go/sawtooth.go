// sawtooth: a healthy Go program. It keeps a fixed 32 MiB working set and churns garbage
// fast, so the heap climbs to the GC goal and drops back, over and over: busy, not leaking.
package main

import (
	"runtime/debug"
	"time"
)

func main() {
	debug.SetGCPercent(200)
	live := make([][]byte, 32)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	var sink []byte
	tick := time.NewTicker(10 * time.Millisecond)
	for range tick.C {
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
