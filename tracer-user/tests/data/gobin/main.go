package main

import (
	"fmt"
	"os"
)

var keep [][]byte

//go:noinline
func retain(n int) { keep = append(keep, make([]byte, n)) }

func main() {
	for i := 0; i < 10; i++ {
		retain(4096)
	}
	fmt.Println(len(keep), os.Getpid())
}
