package cloud

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Anyone may write the store: a FIFO where an object should be is refused
// at once (opening it for reading would wait for a writer forever, and
// with it wal-push, wal-fetch and PostgreSQL's archiver), and an envelope
// announcing more metadata than walvault writes is refused before any is
// read.
func TestFileStoreHostileFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := Open(ctx, "file://"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "wal", "0000000100000000"), 0o750); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "wal", "0000000100000000", "000000010000000000000001")
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { _, err := st.Stat(ctx, "wal/0000000100000000/000000010000000000000001"); done <- err }()
	go func() { _, _, err := st.Get(ctx, "wal/0000000100000000/000000010000000000000001"); done <- err }()
	for range 2 {
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "FIFO") || !errors.As(err, new(permanentError)) {
				t.Fatalf("a FIFO: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("reading a FIFO in the store blocked")
		}
	}
	var listed []string
	if err := st.List(ctx, "wal/", ListOptions{}, func(o ObjectInfo) error { listed = append(listed, o.Key); return nil }); err != nil || len(listed) != 0 {
		t.Fatalf("listing lists the FIFO: %v %v", listed, err)
	}

	// An envelope that says 1 GiB of metadata follows.
	big := filepath.Join(dir, "cluster.json")
	hdr := []byte("WVO1\x00\x00\x00\x00")
	binary.BigEndian.PutUint32(hdr[4:], 1<<30)
	if err := os.WriteFile(big, hdr, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "cluster.json"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized metadata: %v", err)
	}
	var info []ObjectInfo
	if err := st.List(ctx, "", ListOptions{}, func(o ObjectInfo) error { info = append(info, o); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, o := range info {
		if o.Metadata != nil {
			t.Fatalf("a listing carries metadata (%s): it would be held for every key", o.Key)
		}
	}
}
