// A Go program that never asks the runtime for its statistics: no runtime.ReadMemStats, so
// the linker leaves runtime.readmemstats_m out, and the runtime's variables must be found
// through the GC's own functions.
package main

import (
	"os"
	"time"
)

var kept [][]byte

func main() {
	for i := 0; i < 8; i++ {
		go func() { time.Sleep(time.Hour) }()
		kept = append(kept, make([]byte, 1<<20))
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Hour)
}
