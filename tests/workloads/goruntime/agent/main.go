// A k3s-like agent whose control plane is unreachable: every 40 ms it starts a watcher
// goroutine for a new retry, with no backoff, and the watcher never gives up (it waits for an
// answer that never comes). About 25 goroutines a second, each holding little memory.
// Prints "goroutines N" every second (the runtime's own count).
package main

import (
	"fmt"
	"runtime"
	"time"
)

func watch(never chan struct{}, buf []byte) {
	<-never
	_ = buf
}

func main() {
	never := make(chan struct{})
	tick := time.NewTicker(40 * time.Millisecond)
	report := time.NewTicker(time.Second)
	fmt.Println("starting")
	for {
		select {
		case <-tick.C:
			go watch(never, make([]byte, 512))
		case <-report.C:
			fmt.Printf("goroutines %d\n", runtime.NumGoroutine())
		}
	}
}
