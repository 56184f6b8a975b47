// heapleak: a Go service whose cache map grows without bound (the Traefik/spegel shape):
// every 100 ms it stores RATE_KIB/10 KiB of new entries and never evicts, while also
// producing short-lived garbage so the GC runs and RSS saw-tooths on top of the leak.
package main

import (
	"os"
	"strconv"
	"time"
)

func main() {
	rateKiB := 2048
	if len(os.Args) > 1 {
		rateKiB, _ = strconv.Atoi(os.Args[1])
	}
	cache := map[int][]byte{}
	key := 0
	var sink []byte
	for range time.Tick(100 * time.Millisecond) {
		for i := 0; i < rateKiB/10/16; i++ {
			b := make([]byte, 16<<10)
			for j := range b {
				b[j] = byte(j)
			}
			cache[key] = b
			key++
		}
		// Garbage: 4 MiB per tick, dropped at once.
		for i := 0; i < 64; i++ {
			sink = make([]byte, 64<<10)
			sink[0] = 1
		}
	}
	_ = sink
}
