package repo

import (
	"bytes"
	"testing"
)

// FuzzManifest: decodeManifest never panics on any bytes (manifests come
// from the store, which an attacker or a bit flip may have altered); what
// it accepts is safe to restore from (every path stays below its root,
// every file's part exists); and an accepted manifest round-trips: written
// again and read back, it is the same manifest, fully and as a summary.
// The seed corpus is in testdata/fuzz/FuzzManifest.
func FuzzManifest(f *testing.F) {
	good, err := EncodeManifest(sampleManifest())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"files": [], "format": 1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeManifest(bytes.NewReader(b), true)
		m, err := DecodeManifest(bytes.NewReader(b), false)
		if err != nil {
			return
		}
		if m.Name == "" || len(m.Parts) == 0 || len(m.Files) != m.FileCount {
			t.Fatalf("accepted a manifest without name, parts or a matching file count: %+v", m)
		}
		for _, fl := range m.Files {
			if !SafeRelPath(fl.Path) || fl.Part < 0 || fl.Part >= len(m.Parts) {
				t.Fatalf("accepted file %+v (parts: %d)", fl, len(m.Parts))
			}
		}
		enc, err := EncodeManifest(m)
		if err != nil {
			t.Fatalf("an accepted manifest does not encode: %v", err)
		}
		m2, err := DecodeManifest(bytes.NewReader(enc), false)
		if err != nil {
			t.Fatalf("an accepted manifest, written again, does not read back: %v\n%s", err, enc)
		}
		enc2, err := EncodeManifest(m2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the manifest:\n%s\n---\n%s", enc, enc2)
		}
		sum, err := DecodeManifest(bytes.NewReader(enc), true)
		if err != nil {
			t.Fatalf("the summary of an accepted manifest does not read: %v", err)
		}
		if sum.Name != m.Name || sum.StartLSN != m.StartLSN || sum.StopLSN != m.StopLSN || len(sum.Parts) != len(m.Parts) ||
			sum.Permanent != m.Permanent || sum.FileCount != m.FileCount || sum.Files != nil {
			t.Fatalf("summary %+v differs from the manifest %+v", sum, m)
		}
	})
}
