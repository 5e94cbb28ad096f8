package repo

import (
	"strings"
	"testing"

	"github.com/walvault/walvault/archive"
)

// FuzzWALKey: every name PostgreSQL could hand wal-push or wal-fetch maps
// to a key under wal/ that ends in the name and never climbs out of it.
// The seed corpus is in testdata/fuzz/FuzzWALKey.
func FuzzWALKey(f *testing.F) {
	for _, s := range []string{"000000010000000000000001", "00000002.history", "000000010000000000000002.00000028.backup",
		"000000010000000000000003.partial", "../../../etc/passwd", "00000001.history/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		wf, err := archive.ParseWALName(name)
		if err != nil {
			return
		}
		key := WALKey(wf)
		if !strings.HasPrefix(key, WALPrefix) || !strings.HasSuffix(key, "/"+name) || strings.Contains(key, "..") || strings.Contains(key, "//") {
			t.Fatalf("WALKey(%q) = %q", name, key)
		}
	})
}
