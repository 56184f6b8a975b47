// warmcache: fills a cache to CAP_MIB over WARM_SECS seconds, then serves from it forever
// without new allocations: growth that levels off (not a leak once it levels).
package main

import (
	"os"
	"strconv"
	"time"
)

func main() {
	capMiB, warmSecs := 96, 20
	if len(os.Args) > 2 {
		capMiB, _ = strconv.Atoi(os.Args[1])
		warmSecs, _ = strconv.Atoi(os.Args[2])
	}
	cache := make([][]byte, 0, capMiB)
	perTick := float64(capMiB) / float64(warmSecs*10)
	owed := 0.0
	// Serving from the cache reuses one scratch buffer: no garbage, so once the cache is
	// full the heap (and RSS) stays put instead of creeping up to the GC goal.
	scratch := make([]byte, 256<<10)
	for range time.Tick(100 * time.Millisecond) {
		owed += perTick
		for owed >= 1 && len(cache) < capMiB {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			cache = append(cache, b)
			owed--
		}
		for j := 0; j < len(scratch); j += 4096 {
			scratch[j] = byte(len(cache))
		}
	}
}
