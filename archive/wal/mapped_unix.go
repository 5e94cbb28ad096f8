//go:build unix

package wal

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
)

// mapFile maps n bytes of f from off (a multiple of the page size)
// read-only, its pages populated at once (one fault rather than one per
// 64 KiB).
func mapFile(f *os.File, off, n int64) ([]byte, func(), error) {
	if n <= 0 || int64(int(n)) != n {
		return nil, nil, errors.New("not mappable")
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var data []byte
	var merr error
	if err := sc.Control(func(fd uintptr) {
		data, merr = syscall.Mmap(int(fd), off, int(n), syscall.PROT_READ, syscall.MAP_SHARED|mapPopulate) // #nosec G115 -- a file descriptor
	}); err != nil {
		return nil, nil, err
	}
	if merr != nil {
		return nil, nil, merr
	}
	return data, func() { _ = syscall.Munmap(data) }, nil
}

// faultSafe runs fn, turning a fault on mapped memory (the file was
// truncated under the map: SIGBUS) into an error instead of a crash.
func faultSafe(name string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			re, ok := r.(runtime.Error)
			if !ok {
				panic(r)
			}
			if _, fault := re.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = fmt.Errorf("fault reading %s in memory (truncated while read?): %v", name, re)
		}
	}()
	return fn()
}
