// goroutineleak: every 100 ms a request handler starts a goroutine that blocks forever on a
// channel nobody writes, holding a 256 KiB heap buffer (the classic leaked-goroutine shape).
package main

import (
	"os"
	"runtime"
	"strconv"
	"time"
)

func handler(never chan struct{}) {
	buf := make([]byte, 256<<10) // above the 64 KiB stack-allocation limit: on the heap
	for i := range buf {
		buf[i] = byte(i)
	}
	<-never
	runtime.KeepAlive(buf) // the buffer lives as long as the goroutine
}

func main() {
	perTick := 1
	if len(os.Args) > 1 {
		perTick, _ = strconv.Atoi(os.Args[1])
	}
	never := make(chan struct{})
	for range time.Tick(100 * time.Millisecond) {
		for i := 0; i < perTick; i++ {
			go handler(never)
		}
	}
}
