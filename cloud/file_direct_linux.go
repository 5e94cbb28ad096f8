package cloud

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// directAlign is the alignment direct I/O needs of the buffer, the file
// offset and the length: the page size covers every logical block size.
const directAlign = 4096

// directBuffers keeps the aligned buffers of writeDirect (one object, up to
// a few MiB, at a time per caller).
var directBuffers sync.Pool

// writeDirect writes head and body to f (empty, just created) bypassing
// the page cache (O_DIRECT): the object goes from this buffer to the disk
// without the kernel copying it into the page cache first, a copy that
// cost the agent 1-2 ms of CPU per WAL segment under a write-heavy load,
// and the archive does not push the database's own pages out of that
// cache. The data is copied once into an aligned buffer, written padded
// to the alignment, and the file cut to its size; fsync follows as for
// every object. false: the file system does not take direct I/O (tmpfs,
// some FUSE and network file systems) and nothing was written.
func writeDirect(f *os.File, head, body []byte) (bool, error) {
	n := len(head) + len(body)
	padded := (n + directAlign - 1) &^ (directAlign - 1)
	buf := alignedBuffer(padded)
	defer directBuffers.Put(&buf)
	copy(buf, head)
	copy(buf[len(head):], body)
	clear(buf[n:padded])

	sc, err := f.SyscallConn()
	if err != nil {
		return false, nil
	}
	setDirect := func(on bool) (err error) {
		cerr := sc.Control(func(fd uintptr) {
			var flags int
			if flags, err = fcntl(fd, syscall.F_GETFL, 0); err != nil {
				return
			}
			if on {
				flags |= syscall.O_DIRECT
			} else {
				flags &^= syscall.O_DIRECT
			}
			_, err = fcntl(fd, syscall.F_SETFL, flags)
		})
		if cerr != nil {
			return cerr
		}
		return err
	}
	if setDirect(true) != nil {
		return false, nil
	}
	_, werr := directWrite(f, buf)
	if err := setDirect(false); err != nil && werr == nil {
		werr = err
	}
	if errors.Is(werr, syscall.EINVAL) {
		// Refused at the first write: start over without direct I/O.
		if err := f.Truncate(0); err != nil {
			return false, err
		}
		_, err := f.Seek(0, io.SeekStart)
		return false, err
	}
	if werr != nil {
		return true, werr
	}
	return true, f.Truncate(int64(n))
}

// directWrite is the write with O_DIRECT set (a test makes it refuse).
var directWrite = (*os.File).Write

func fcntl(fd uintptr, cmd, arg int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, uintptr(cmd), uintptr(arg))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// alignedBuffer returns n bytes starting at a directAlign boundary.
func alignedBuffer(n int) []byte {
	if p, ok := directBuffers.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	b := make([]byte, n+directAlign)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1)) // #nosec G103 -- alignment of our own buffer
	return b[off : off+n]
}
