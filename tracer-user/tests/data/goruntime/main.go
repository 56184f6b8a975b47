// A Go program whose runtime state is known: it runs and ends 2000 short-lived goroutines
// (their records stay, on the free lists a goroutine count must subtract), holds a set
// number of goroutines blocked and a set live heap, sets a memory limit, collects garbage
// a few times, then prints what its own runtime says (the truth leaktracer's reader is
// compared with) and waits, without allocating, for a line on its standard input.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
)

// Kept reachable so the collector keeps it live.
var live [][]byte

func main() {
	goroutines, _ := strconv.Atoi(os.Args[1])
	liveMiB, _ := strconv.Atoi(os.Args[2])
	limit, _ := strconv.ParseInt(os.Args[3], 10, 64)

	debug.SetMemoryLimit(limit)
	var done sync.WaitGroup
	for i := 0; i < 2000; i++ {
		done.Add(1)
		go func() { done.Done() }()
	}
	done.Wait()
	block := make(chan struct{})
	for i := 0; i < goroutines; i++ {
		go func() { <-block }()
	}
	for i := 0; i < liveMiB*16; i++ {
		live = append(live, make([]byte, 64<<10))
	}
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	report()
	// Each line read is a new GOMAXPROCS (the Ps are reallocated or dropped), then a GC
	// and the truth again; end of input ends the program. Waiting in a read keeps it alive
	// without a timer or an allocation (a bare select{} would be reported as a deadlock).
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		if n, err := strconv.Atoi(lines.Text()); err == nil {
			runtime.GOMAXPROCS(n)
		}
		runtime.GC()
		report()
	}
	close(block)
	runtime.KeepAlive(live)
}

// report prints what the runtime says of itself, on one line.
func report() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("goroutines=%d heap_alloc=%d num_gc=%d next_gc=%d memory_limit=%d procs=%d\n",
		runtime.NumGoroutine(), ms.HeapAlloc, ms.NumGC, ms.NextGC, debug.SetMemoryLimit(-1),
		runtime.GOMAXPROCS(0))
}
