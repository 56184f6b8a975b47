// filereader: maps a FILE_MIB file and reads through it again and again: file-backed RSS
// grows to the file's size and is reclaimable page cache, not a leak.
package main

import (
	"os"
	"strconv"
	"syscall"
	"time"
)

// sum keeps the reads: see the loop.
var sum int

func main() {
	mib := 128
	if len(os.Args) > 1 {
		mib, _ = strconv.Atoi(os.Args[1])
	}
	f, err := os.CreateTemp("", "leaktracer-filereader-*")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	buf := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		f.Write(buf)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, mib<<20, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		panic(err)
	}
	os.Remove(f.Name())
	for {
		for off := 0; off < len(data); off += 4096 {
			// Into a package variable: a local sum that is never used let the compiler
			// drop the loads, and the mapping was never read at all (RSS 0, no refaults).
			sum += int(data[off])
			if off%(8<<20) == 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}
