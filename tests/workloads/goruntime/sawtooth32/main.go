// A healthy Go service: a 32 MiB live set, and garbage allocated fast enough that the GC
// runs every second or so, so its RSS saw-tooths. Never leaking. Prints "ready" once the live
// set is in place, then "live N" after each forced look at its own heap every 5 s.
package main

import (
	"fmt"
	"runtime"
	"time"
)

var live [][]byte
var sink []byte

func main() {
	for i := 0; i < 32; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(i)
		}
		live = append(live, b)
	}
	fmt.Println("ready")
	last := time.Now()
	for {
		// 8 MiB of garbage every 100 ms: a GC every second or so at the default GOGC.
		for i := 0; i < 8; i++ {
			sink = make([]byte, 1<<20)
			sink[0] = 1
		}
		time.Sleep(100 * time.Millisecond)
		if time.Since(last) > 5*time.Second {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Printf("live %d\n", m.HeapAlloc)
			last = time.Now()
		}
	}
}
