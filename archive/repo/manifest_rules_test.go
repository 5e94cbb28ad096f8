package repo

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Everything a manifest says came from the store: text that could carry a
// terminal escape, a settings line or a bidi trick is refused on read, as
// are names walvault never gives and tablespaces that would alias.
func TestManifestTextRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		want   string // "" when the manifest must be accepted
	}{
		{"name with a newline", func(m *Manifest) { m.Name = "base_1\nrecovery_end_command = 'x'" }, "bad backup name"},
		{"name with an escape", func(m *Manifest) { m.Name = "base_\x1b[31m" }, "bad backup name"},
		{"name with a space", func(m *Manifest) { m.Name = "base 1" }, "bad backup name"},
		{"name starting with a dot", func(m *Manifest) { m.Name = ".hidden" }, "bad backup name"},
		{"name of 129 bytes", func(m *Manifest) { m.Name = long(129) }, "bad backup name"},
		{"name of 128 bytes", func(m *Manifest) { m.Name = long(128) }, ""},
		{"hostname with an escape", func(m *Manifest) { m.Hostname = "db1\x1b]0;owned\x07" }, "hostname"},
		{"hostname too long", func(m *Manifest) { m.Hostname = long(256) }, "hostname"},
		{"hostname in Unicode", func(m *Manifest) { m.Hostname = "bücher-ü.example" }, ""},
		{"software with a bidi override", func(m *Manifest) { m.Software = "walvault \u202e1.0" }, "software"},
		{"version string with DEL", func(m *Manifest) { m.PGVersionString = "PostgreSQL 15\x7f" }, "pg_version_string"},
		{"system identifier not digits", func(m *Manifest) { m.SystemIdentifier = "73e5" }, "system_identifier"},
		{"system identifier missing", func(m *Manifest) { m.SystemIdentifier = "" }, "system_identifier"},
		{"start_wal not a segment", func(m *Manifest) { m.StartWAL = "00000002.history" }, "start_wal"},
		{"stop_wal with a newline", func(m *Manifest) { m.StopWAL = "000000010000000000000004\n" }, "stop_wal"},
		{"start_wal of another timeline", func(m *Manifest) { m.StartWAL = "000000020000000000000004" }, "timeline"},
		{"segment out of range for the size", func(m *Manifest) { m.StopWAL = "000000010000000000000100" }, "stop_wal"},
		{"stop before start", func(m *Manifest) { m.StartWAL = "000000010000000000000005" }, "before"},
		{"stop LSN before start LSN", func(m *Manifest) { m.StopLSN = 1 }, "before"},
		{"unknown compression", func(m *Manifest) { m.Compression = "gzip" }, "compression"},
		{"pgdata with a carriage return", func(m *Manifest) { m.PGData = "/var/lib/pg\r/x" }, "pgdata"},
		{"owner with a C1 control", func(m *Manifest) { m.Owner.User = "post\u0085gres" }, "owner user"},
		{"group too long", func(m *Manifest) { m.Owner.Group = long(129) }, "owner group"},
		{"label with a carriage return", func(m *Manifest) { m.BackupLabel = "LABEL: x\r\n" }, "backup_label"},
		{"label with NUL", func(m *Manifest) { m.BackupLabel = "LABEL: x\x00\n" }, "backup_label"},
		{"label over 64 KiB", func(m *Manifest) { m.BackupLabel = long(64<<10 + 1) }, "backup_label"},
		{"label of 64 KiB of newlines", func(m *Manifest) { m.BackupLabel = strings.Repeat("\n", 64<<10) }, ""},
		{"tablespace map with an escape", func(m *Manifest) { m.TablespaceMap = "16390 /x\x1b[2J\n" }, "tablespace_map"},
		{"tablespace map over 1 MiB", func(m *Manifest) { m.TablespaceMap = long(1<<20 + 1) }, "tablespace_map"},
		// The worst escaping a valid map can take: every byte doubled.
		{"tablespace map of 1 MiB of backslashes", func(m *Manifest) { m.TablespaceMap = strings.Repeat(`\`, 1<<20) }, ""},
		{"65 annotations", func(m *Manifest) {
			m.Annotations = map[string]string{}
			for i := range 65 {
				m.Annotations[fmt.Sprint(i)] = "x"
			}
		}, "annotations"},
		{"annotation over 1 KiB", func(m *Manifest) { m.Annotations = map[string]string{"k": long(1024)} }, "annotation"},
		{"annotation with a newline", func(m *Manifest) { m.Annotations = map[string]string{"k": "a\nrecovery_end_command = 'x'"} }, "annotation"},
		{"annotation key with a zero-width joiner", func(m *Manifest) { m.Annotations = map[string]string{"k\u200d": "v"} }, "annotation"},
		{"annotation with an empty key", func(m *Manifest) { m.Annotations = map[string]string{"": "v"} }, "annotation"},
		{"annotations within bounds", func(m *Manifest) { m.Annotations = map[string]string{"owner": "team-db", "ticket": long(1000)} }, ""},
		{"tablespace OID 0", func(m *Manifest) { m.Tablespaces = []Tablespace{{OID: 0, Location: "/srv/ts"}} }, "OID 0"},
		{"tablespace OID twice", func(m *Manifest) {
			m.Tablespaces = []Tablespace{{OID: 16390, Location: "/srv/a"}, {OID: 16390, Location: "/srv/b"}}
		}, "OID 16390"},
		{"tablespace relative", func(m *Manifest) { m.Tablespaces = []Tablespace{{OID: 16390, Location: "srv/ts"}} }, "absolute"},
		{"tablespace unclean", func(m *Manifest) { m.Tablespaces = []Tablespace{{OID: 16390, Location: "/srv/../etc"}} }, "absolute"},
		{"tablespace with a trailing slash", func(m *Manifest) { m.Tablespaces = []Tablespace{{OID: 16390, Location: "/srv/ts/"}} }, "absolute"},
		{"tablespace location with a newline", func(m *Manifest) { m.Tablespaces = []Tablespace{{OID: 16390, Location: "/srv/ts\n"}} }, "location"},
		{"tablespace name with an escape", func(m *Manifest) {
			m.Tablespaces = []Tablespace{{OID: 16390, Name: "fast\x1b[0m", Location: "/srv/ts"}}
		}, "name of tablespace"},
		{"tablespaces as written", func(m *Manifest) {
			m.Tablespaces = []Tablespace{{OID: 16390, Name: "fast", Location: "/srv/ts"}, {OID: 16391, Name: "données", Location: "/srv/ts 2"}}
		}, ""},
		{"path with a bidi override", func(m *Manifest) { m.Files[1].Path = "base/1/\u202e1259" }, "path"},
		{"path too long", func(m *Manifest) { m.Files[1].Path = "base/" + long(4096) }, "unsafe path"},
		{"link with an escape", func(m *Manifest) { m.Files[0].Type, m.Files[0].Link = TypeSymlink, "/srv/\x1b[2J" }, "link"},
		{"mode with NUL", func(m *Manifest) { m.Files[1].Mode = "06\x0000" }, "mode"},
		{"checksum not hex", func(m *Manifest) { m.Files[1].CRC32C = "zzzzzzzz" }, "checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleManifest()
			tt.mutate(m)
			body, err := EncodeManifest(m)
			if err != nil {
				t.Fatal(err)
			}
			// A summary does not read the file list.
			files := fmt.Sprint(m.Files) != fmt.Sprint(sampleManifest().Files)
			for _, summary := range []bool{false, true} {
				_, err := DecodeManifest(bytes.NewReader(body), summary)
				switch {
				case tt.want == "" || summary && files:
					if err != nil {
						t.Fatalf("summary=%v: refused: %v", summary, err)
					}
				case err == nil || !strings.Contains(err.Error(), tt.want):
					t.Fatalf("summary=%v: got %v, want an error containing %q", summary, err, tt.want)
				}
			}
			if err := m.Validate(); (err == nil) != (tt.want == "") {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// What JSON cannot carry is still refused when a manifest is checked in
// memory (before it is written).
func TestManifestInvalidUTF8(t *testing.T) {
	m := sampleManifest()
	m.Hostname = "db\xff1"
	if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "hostname") {
		t.Fatalf("invalid UTF-8: %v", err)
	}
	m.Hostname = "db\uFFFD1" // the replacement character itself is text
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}

// hugeField streams a manifest whose field holds n bytes of filler,
// without holding them: a bucket writer's manifest of any size costs the
// test nothing.
type hugeField struct {
	prefix, suffix []byte
	n              int64 // filler left
	read           int64
}

func (h *hugeField) Read(p []byte) (int, error) {
	k := 0
	for k < len(p) {
		switch {
		case len(h.prefix) > 0:
			c := copy(p[k:], h.prefix)
			h.prefix, k = h.prefix[c:], k+c
		case h.n > 0:
			c := int(min(int64(len(p)-k), h.n))
			for i := range c {
				p[k+i] = 'A'
			}
			h.n, k = h.n-int64(c), k+c
		case len(h.suffix) > 0:
			c := copy(p[k:], h.suffix)
			h.suffix, k = h.suffix[c:], k+c
		default:
			h.read += int64(k)
			return k, io.EOF
		}
	}
	h.read += int64(k)
	return k, nil
}

// manifestAround returns m's JSON cut around the marker string one of its
// fields holds: what comes before the marker, and what comes after.
func manifestAround(t *testing.T, m *Manifest) (prefix, suffix []byte) {
	t.Helper()
	body, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	const marker = `\u0001marker\u0001`
	at := bytes.Index(body, []byte(marker))
	if at < 0 {
		t.Fatalf("no marker in\n%s", body)
	}
	return body[:at], body[at+len(marker):]
}

// allocated runs fn and returns the bytes it allocated (cumulative: a
// buffer grown and dropped counts).
func allocated(fn func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A 300 MB backup_label (or path) is refused after a few MiB, while
// decoding: encoding/json would otherwise hold it whole, and backup-list
// read every such manifest's head.
func TestDecodeManifestBoundsLongFields(t *testing.T) {
	const filler = 300 << 20
	const maxAlloc = 64 << 20
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		want   string
		full   bool // only a full read reaches it
	}{
		{"backup_label", func(m *Manifest) { m.BackupLabel = "\x01marker\x01" }, `field "backup_label" is longer than`, false},
		{"annotation", func(m *Manifest) { m.Annotations = map[string]string{"k": "\x01marker\x01"} }, `field "annotations" is longer than`, false},
		{"file path", func(m *Manifest) { m.Files[2].Path = "\x01marker\x01" }, "entry 2 of files is longer than", true},
	}
	for _, tt := range tests {
		for _, summary := range []bool{false, true} {
			if tt.full && summary {
				continue
			}
			t.Run(fmt.Sprintf("%s/summary=%v", tt.name, summary), func(t *testing.T) {
				m := sampleManifest()
				tt.mutate(m)
				prefix, suffix := manifestAround(t, m)
				src := &hugeField{prefix: prefix, suffix: suffix, n: filler}
				var err error
				n := allocated(func() { _, err = DecodeManifest(src, summary) })
				t.Logf("%v; read %d KiB, allocated %d KiB", err, src.read>>10, n>>10)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("got %v, want an error containing %q", err, tt.want)
				}
				if n > maxAlloc {
					t.Errorf("decoding allocated %d MiB (limit %d MiB)", n>>20, maxAlloc>>20)
				}
				if src.read > 2*maxFieldBytes {
					t.Errorf("read %d MiB of the manifest before refusing it", src.read>>20)
				}
			})
		}
	}
}

// The head as a whole is bounded too: many fields, each within bounds,
// cannot add up to more than MaxManifestHeadBytes.
func TestDecodeManifestBoundsTheHead(t *testing.T) {
	field := `"x": "` + strings.Repeat("a", 1<<20) + `", `
	var read int64
	src := io.MultiReader(strings.NewReader(`{"format": 1, `), &repeatReader{s: field, n: 2 * MaxManifestHeadBytes / len(field), read: &read})
	_, err := DecodeManifest(src, true)
	if err == nil || !strings.Contains(err.Error(), "before the file list are longer than") {
		t.Fatalf("got %v", err)
	}
	if read > MaxManifestHeadBytes+maxFieldBytes {
		t.Fatalf("read %d MiB", read>>20)
	}
}

type repeatReader struct {
	s    string
	n    int
	off  int
	read *int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := copy(p, r.s[r.off:])
	r.off += k
	if r.off == len(r.s) {
		r.off, r.n = 0, r.n-1
	}
	*r.read += int64(k)
	return k, nil
}

// A big file list streams: every entry is decoded on its own, and the
// result is the whole list.
func TestDecodeManifestManyFiles(t *testing.T) {
	m := sampleManifest()
	base := m.Files[1]
	for i := range 50_000 {
		f := base
		f.Path = fmt.Sprintf("base/16384/%d", 100000+i)
		m.Files = append(m.Files, f)
	}
	m.FileCount = len(m.Files)
	body, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeManifest(bytes.NewReader(body), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != m.FileCount || got.Files[m.FileCount-1].Path != m.Files[m.FileCount-1].Path {
		t.Fatalf("%d files", len(got.Files))
	}
}

// Manifests written before this change HTML-escaped '<', '>' and '&' and
// still read; the ones written now do not escape them.
func TestManifestHTMLCharacters(t *testing.T) {
	m := sampleManifest()
	m.Annotations = map[string]string{"note": "a<b>&c"}
	body, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(`"a<b>&c"`)) {
		t.Fatalf("escaped:\n%s", body)
	}
	old := bytes.Replace(body, []byte(`"a<b>&c"`), []byte(`"a\u003cb\u003e\u0026c"`), 1)
	got, err := DecodeManifest(bytes.NewReader(old), false)
	if err != nil || got.Annotations["note"] != "a<b>&c" {
		t.Fatalf("%v %+v", err, got)
	}
}

// The fuzz corpus holds a seed for each rule: the ones named valid* are
// accepted, every other one is refused, so each seed exercises the rule
// it is named for rather than failing on something else first.
func TestManifestCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzManifest")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		quoted, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\n[]byte(")
		body, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
		if !ok || err != nil {
			t.Fatalf("%s: not a corpus file: %v", e.Name(), err)
		}
		_, err = DecodeManifest(strings.NewReader(body), false)
		if valid := strings.HasPrefix(e.Name(), "valid"); valid != (err == nil) {
			t.Errorf("%s: %v", e.Name(), err)
		} else if err != nil {
			t.Logf("%s: %v", e.Name(), err)
		}
	}
}
