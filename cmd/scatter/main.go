// Command scatter mounts a drive whose data lives, encrypted and erasure-coded, on other
// people's devices, and donates local disk to other drives.
package main

import (
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: scatter <command> [flags]\ncommands: version")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "version":
		fmt.Println("scatter", version)
	default:
		fmt.Fprintf(os.Stderr, "scatter: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
