package cloud

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// TestWriteDirect: an object written with direct I/O (or, where the file
// system refuses it, not written at all) has exactly its bytes, whatever
// its length against the alignment.
func TestWriteDirect(t *testing.T) {
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "wv-direct-")
		if err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(shm) })
			dirs = append(dirs, shm)
		}
	}
	head := []byte("WVO1\x00\x00\x00\x02{}")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range dirs {
		for _, n := range []int{0, 1, directAlign - len(head) - 1, directAlign - len(head), directAlign - len(head) + 1, 3 * directAlign, 1<<20 + 17} {
			body := make([]byte, n)
			for i := range body {
				body[i] = byte(rng.Uint32())
			}
			p := filepath.Join(dir, "obj")
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			done, err := writeDirect(f, head, body)
			if err != nil {
				t.Fatalf("%s, %d bytes: %v", dir, n, err)
			}
			if !done {
				if st, _ := f.Stat(); st.Size() != 0 {
					t.Fatalf("%s: refused, yet %d bytes written", dir, st.Size())
				}
				if _, err := f.Write(append(append([]byte(nil), head...), body...)); err != nil {
					t.Fatal(err)
				}
			}
			_ = f.Close()
			got, err := os.ReadFile(p) // #nosec G304 -- the test's own file
			if err != nil {
				t.Fatal(err)
			}
			if want := append(append([]byte(nil), head...), body...); !bytes.Equal(got, want) {
				t.Fatalf("%s, %d bytes (direct %v): read back %d bytes, not the %d written", dir, n, done, len(got), len(want))
			}
			t.Logf("%s, %d bytes: direct I/O %v", dir, n, done)
			_ = os.Remove(p)
		}
	}
}

// TestWriteDirectRefused: a file system that refuses direct I/O at the
// first write (EINVAL) leaves the file empty and the object is written the
// ordinary way, whole.
func TestWriteDirectRefused(t *testing.T) {
	defer func(w func(*os.File, []byte) (int, error)) { directWrite = w }(directWrite)
	directWrite = func(f *os.File, b []byte) (int, error) {
		n, _ := f.Write(b[:directAlign]) // a file system that wrote part, then refused
		return n, syscall.EINVAL
	}
	st, err := Open(context.Background(), "file://"+t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("walvault"), 100000)
	if err := st.Put(context.Background(), "wal/x", Bytes(body), PutOptions{Metadata: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	r, info, err := st.Get(context.Background(), "wal/x")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, body) || info.Metadata["k"] != "v" {
		t.Fatalf("read back %d bytes (want %d), metadata %v, err %v", len(got), len(body), info.Metadata, err)
	}
}

func TestAlignedBuffer(t *testing.T) {
	for _, n := range []int{directAlign, 5 * directAlign, 1 << 20} {
		b := alignedBuffer(n)
		if len(b) != n || uintptr(unsafe.Pointer(&b[0]))%directAlign != 0 { // #nosec G103 -- checking alignment
			t.Fatalf("alignedBuffer(%d): %d bytes at %p", n, len(b), &b[0])
		}
		directBuffers.Put(&b)
	}
}
