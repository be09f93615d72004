// Command emuckpt runs static Linux x86-64 programs in a KVM micro-VM whose
// kernel is emuckpt itself. See README.md and `emuckpt help`.
package main

import (
	"os"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
