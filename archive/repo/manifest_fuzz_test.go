package repo

import (
	"bytes"
	"path"
	"reflect"
	"regexp"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzManifest: decodeManifest never panics on any bytes (manifests come
// from the store, which an attacker or a bit flip may have altered); what
// it accepts is safe to restore from (every path stays below its root,
// every file's part exists) and to print (no string holds a control or
// format character, the name is one walvault gives, tablespace OIDs are
// non-zero and distinct, their locations absolute and clean); and an
// accepted manifest round-trips: written again and read back, it is the
// same manifest, fully and as a summary. The seed corpus is in
// testdata/fuzz/FuzzManifest.
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
		if sum, err := DecodeManifest(bytes.NewReader(b), true); err == nil {
			checkAccepted(t, sum)
		}
		m, err := DecodeManifest(bytes.NewReader(b), false)
		if err != nil {
			return
		}
		checkAccepted(t, m)
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

// backupNameRE is the pattern backup names must match, written out
// independently of ValidBackupName.
var backupNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkAccepted fails t when an accepted manifest breaks a rule that
// keeps bucket text data: every string in it, found by reflection so that
// a new field is covered without being listed, is plain text (newlines
// only in backup_label and tablespace_map).
func checkAccepted(t *testing.T, m *Manifest) {
	t.Helper()
	if !backupNameRE.MatchString(m.Name) {
		t.Fatalf("accepted backup name %q", m.Name)
	}
	seen := map[uint32]bool{}
	for _, s := range m.Tablespaces {
		if s.OID == 0 || seen[s.OID] {
			t.Fatalf("accepted tablespaces %+v", m.Tablespaces)
		}
		seen[s.OID] = true
		if !path.IsAbs(s.Location) || path.Clean(s.Location) != s.Location {
			t.Fatalf("accepted tablespace location %q", s.Location)
		}
	}
	walkStrings(reflect.ValueOf(m).Elem(), "", func(field, s string) {
		newlines := field == "BackupLabel" || field == "TablespaceMap"
		if !utf8.ValidString(s) {
			t.Fatalf("accepted %s %q: not UTF-8", field, s)
		}
		for _, r := range s {
			if unicode.IsControl(r) && (r != '\n' || !newlines) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
				t.Fatalf("accepted %s %q: it holds %U", field, s, r)
			}
		}
	})
}

// walkStrings calls fn with every string in v (struct fields, slice
// elements, map keys and values), and the name of the struct field that
// holds it.
func walkStrings(v reflect.Value, field string, fn func(field, s string)) {
	switch v.Kind() {
	case reflect.String:
		fn(field, v.String())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				walkStrings(v.Field(i), v.Type().Field(i).Name, fn)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walkStrings(v.Index(i), field, fn)
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			walkStrings(it.Key(), field, fn)
			walkStrings(it.Value(), field, fn)
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkStrings(v.Elem(), field, fn)
		}
	}
}
