package cloud_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/cloud/storetest"
)

// TestGetRangeResumes: a range body whose connection breaks midway is
// opened again where it broke, and the bytes handed on are the range's;
// past the retry budget the break is the reader's error.
func TestGetRangeResumes(t *testing.T) {
	t.Parallel()
	data := make([]byte, 3<<20)
	r := rand.NewChaCha8([32]byte{7})
	_, _ = r.Read(data)
	faults := storetest.NewFaults(openURL(t, "file://"+t.TempDir()+"/store", cloud.Options{}))
	if err := faults.Put(t.Context(), "obj", cloud.Bytes(data), cloud.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	p := cloud.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}
	st := cloud.WithRetry(faults, p)
	for _, tc := range []struct {
		name  string
		times int
		fails bool
	}{{"two breaks", 2, false}, {"breaks past the budget", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			faults.Set(storetest.Rule{Op: storetest.Get, Cut: 0.3, Times: tc.times})
			off, n := int64(12345), int64(2<<20)
			rc, err := st.GetRange(t.Context(), "obj", off, n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			_ = rc.Close()
			if tc.fails {
				if err == nil {
					t.Fatalf("read %d bytes without an error; want the break past the budget", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data[off:off+n]) {
				t.Fatalf("resumed range: %d bytes, not the object's bytes %d..%d", len(got), off, off+n)
			}
		})
	}
}
