package repo

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func sampleManifest() *Manifest {
	t0 := time.Date(2026, 11, 29, 21, 15, 0, 0, time.UTC)
	return &Manifest{
		Format: ManifestFormat, Name: "base_20261129T211500Z_000000010000000000000004", PGVersion: 150004,
		SystemIdentifier: "7300000000000000001", Timeline: 1, StartLSN: 0x4000028, StopLSN: 0x4000138,
		StartWAL: "000000010000000000000004", StopWAL: "000000010000000000000004", StartTime: t0, StopTime: t0.Add(3 * time.Second),
		SegmentSize: 16 << 20, Compression: "lz4", DataSize: 30, StoredSize: 20,
		Parts: []Part{
			{Name: "part-00000", Files: 2, Size: 3072, StoredSize: 10, SHA256: strings.Repeat("ab", 32), Sums: strings.Repeat("a1", 32)},
			{Name: "part-00001", Files: 1, Size: 2048, StoredSize: 10, SHA256: strings.Repeat("cd", 32), Sums: strings.Repeat("c1", 32)},
		},
		FileCount: 4,
		Files: []File{
			{Path: "base", Type: TypeDir, Mode: "0700", MTime: t0},
			{Path: "base/1/1259", Size: 10, Mode: "0600", MTime: t0, CRC32C: "0badcafe"},
			{Path: "PG_VERSION", Size: 3, Mode: "0600", MTime: t0, CRC32C: "12345678"},
			{Path: "backup_label", Part: 1, Size: 17, Mode: "0600", MTime: t0, CRC32C: "87654321"},
		},
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	body, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(body) {
		t.Fatalf("not valid JSON:\n%s", body)
	}
	// One file per line keeps big manifests readable and diffable.
	if n := strings.Count(string(body), `"path":`); n != 4 {
		t.Fatalf("%d file lines", n)
	}
	full, err := DecodeManifest(bytes.NewReader(body), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Files) != 4 || full.Files[1].CRC32C != "0badcafe" || !full.StopTime.Equal(m.StopTime) || full.StartLSN != 0x4000028 {
		t.Fatalf("round trip lost data: %+v", full)
	}
	sum, err := DecodeManifest(bytes.NewReader(body), true)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files != nil || sum.Name != m.Name || len(sum.Parts) != 2 || sum.FileCount != 4 {
		t.Fatalf("summary: %+v", sum)
	}
	// The summary reader must not need the file list at all: a manifest
	// cut inside it still yields the summary.
	cut := body[:bytes.Index(body, []byte("\"files\": [\n"))+15]
	if _, err := DecodeManifest(bytes.NewReader(cut), true); err != nil {
		t.Fatalf("summary read the file list: %v", err)
	}
}

func TestManifestValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		want   string
		text   func(string) string // edits the JSON, for what the type cannot hold
	}{
		{"newer format", func(m *Manifest) { m.Format = ManifestFormat + 1 }, "upgrade walvault", nil},
		{"bad start lsn", func(*Manifest) {}, "LSN", func(s string) string {
			return strings.Replace(s, `"start_lsn": "0/4000028"`, `"start_lsn": "zz"`, 1)
		}},
		{"no parts", func(m *Manifest) { m.Parts = nil }, "no parts", nil},
		{"misnamed part", func(m *Manifest) { m.Parts[1].Name = "part-7" }, "named", nil},
		{"bad sha", func(m *Manifest) { m.Parts[0].SHA256 = "abc" }, "sha256", nil},
		{"absolute path", func(m *Manifest) { m.Files[1].Path = "/etc/passwd" }, "unsafe path", nil},
		{"escaping path", func(m *Manifest) { m.Files[1].Path = "base/../../x" }, "unsafe path", nil},
		{"dot dot", func(m *Manifest) { m.Files[1].Path = ".." }, "unsafe path", nil},
		{"part out of range", func(m *Manifest) { m.Files[2].Part = 5 }, "out of range", nil},
		{"missing crc", func(m *Manifest) { m.Files[2].CRC32C = "" }, "no checksum", nil},
		{"file count", func(m *Manifest) { m.FileCount = 9 }, "says 9", nil},
		{"unknown type", func(m *Manifest) { m.Files[0].Type = "fifo" }, "unknown type", nil},
		{"bad name", func(m *Manifest) { m.Name = "a/b" }, "bad backup name", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleManifest()
			tt.mutate(m)
			body, err := EncodeManifest(m)
			if err != nil {
				t.Fatal(err)
			}
			if tt.text != nil {
				edited := tt.text(string(body))
				if edited == string(body) {
					t.Fatal("the edit changed nothing")
				}
				body = []byte(edited)
			}
			_, err = DecodeManifest(bytes.NewReader(body), false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := DecodeManifest(strings.NewReader("[1,2]"), true); err == nil {
		t.Fatal("a JSON array passed as a manifest")
	}
}

func TestFilePerm(t *testing.T) {
	for mode, want := range map[string]uint32{"0600": 0o600, "0750": 0o750, "": 0o600, "9": 0o600} {
		if got := (File{Mode: mode}).Perm(); got != want {
			t.Errorf("Perm(%q) = %o, want %o", mode, got, want)
		}
	}
}
