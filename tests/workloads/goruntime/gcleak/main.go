// A heap leak under GC: it keeps 1 MiB every 500 ms and churns garbage, and its GC runs every
// 2 s (GOGC off, runtime.GC() on a timer, as a service with forced periodic GC). RSS saw-tooths
// around a slowly rising floor; the heap each GC leaves live rises by 4 MiB every cycle.
// Prints "started" and, after each GC, "gc N live BYTES".
package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"
)

var kept [][]byte
var sink []byte

func main() {
	debug.SetGCPercent(-1)
	fmt.Println("started")
	keep := time.NewTicker(500 * time.Millisecond)
	gc := time.NewTicker(2 * time.Second)
	churn := time.NewTicker(50 * time.Millisecond)
	for {
		select {
		case <-keep.C:
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = 1
			}
			kept = append(kept, b)
		case <-churn.C:
			sink = make([]byte, 1<<20)
			sink[0] = 1
		case <-gc.C:
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Printf("gc %d live %d\n", m.NumGC, m.HeapAlloc)
		}
	}
}
