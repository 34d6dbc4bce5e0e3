// Command etcdserver is etcd itself, built from go.etcd.io/etcd/server/v3 at
// the version go.mod pins, so tests and benchmarks run a real multi-member
// cluster as separate processes without a packaged etcd.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
