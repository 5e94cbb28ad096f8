package repo

import (
	"bytes"
	"strings"
	"testing"
)

// sampleIncremental is sampleManifest as an incremental: base/1/1259 is
// two 8 KiB blocks of which the second is stored, PG_VERSION is the
// parent's.
func sampleIncremental() *Manifest {
	m := sampleManifest()
	m.Type, m.BlockSize = BackupIncremental, 8192
	m.Parent = "base_20261128T211500Z_000000010000000000000002"
	m.Chain = []string{m.Parent, "base_20261127T211500Z_000000010000000000000001"}
	m.ParentManifestSHA256 = strings.Repeat("ef", 32)
	bm := NewBlockMap(2)
	bm.Set(1)
	m.Files[1].Size, m.Files[1].Stored, m.Files[1].Blocks = 16384, StoredBlocks, bm.String()
	m.Files[2].Stored = StoredParent
	return m
}

func TestIncrementalManifestRoundTrip(t *testing.T) {
	m := sampleIncremental()
	body, err := EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeManifest(bytes.NewReader(body), false)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Incremental() || got.Parent != m.Parent || len(got.Chain) != 2 || got.BlockSize != 8192 {
		t.Fatalf("head lost: %+v", got)
	}
	bm, err := DecodeBlockMap(got.Files[1].Blocks, 2)
	if err != nil || bm.Has(0) || !bm.Has(1) || bm.Count() != 1 {
		t.Fatalf("block map %q: %v", got.Files[1].Blocks, err)
	}
	if got.Files[2].Stored != StoredParent {
		t.Fatalf("stored: %+v", got.Files[2])
	}
	// A full backup is still written as format 1, which older builds read.
	if full := sampleManifest(); full.Incremental() {
		t.Fatal("a manifest without a type is incremental")
	}
}

func TestIncrementalManifestValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Manifest)
		want   string
	}{
		{"old format", func(m *Manifest) { m.Format = ManifestFormatFull }, "manifest format 1"},
		{"unknown type", func(m *Manifest) { m.Type = "differential" }, "unknown backup type"},
		{"full with parent", func(m *Manifest) { m.Type = BackupFull }, "full backup names a parent"},
		{"no chain", func(m *Manifest) { m.Chain = nil }, "chain"},
		{"chain not from parent", func(m *Manifest) { m.Chain[0], m.Chain[1] = m.Chain[1], m.Chain[0] }, "chain"},
		{"self in chain", func(m *Manifest) { m.Chain[1] = m.Name }, "repeated"},
		{"bad name in chain", func(m *Manifest) { m.Chain[1] = "../x" }, "bad or repeated"},
		{"long chain", func(m *Manifest) {
			for len(m.Chain) <= MaxChain {
				m.Chain = append(m.Chain, "b"+strings.Repeat("x", len(m.Chain)%100)+string(rune('a'+len(m.Chain)%26))+strings.Repeat("y", len(m.Chain)/26))
			}
		}, "chain"},
		{"no parent sha", func(m *Manifest) { m.ParentManifestSHA256 = "" }, "sha256"},
		{"odd block size", func(m *Manifest) { m.BlockSize = 8000 }, "block_size"},
		{"blocks in a full", func(m *Manifest) {
			m.Type, m.Parent, m.Chain, m.ParentManifestSHA256 = "", "", nil, ""
		}, "outside an incremental"},
		{"partial block", func(m *Manifest) { m.Files[1].Size = 10000 }, "whole number"},
		{"map too short", func(m *Manifest) { m.Files[1].Size = 8192 * 9 }, "block map"},
		{"map past the end", func(m *Manifest) { m.Files[1].Blocks = blockMapWith(8, 0, 7).String() }, "past the end"},
		{"map not base64", func(m *Manifest) { m.Files[1].Blocks = "!!" }, "block map"},
		{"parent with part", func(m *Manifest) { m.Files[2].Part = 1 }, "stored in the parent"},
		{"unknown storage", func(m *Manifest) { m.Files[2].Stored = "elsewhere" }, "unknown storage"},
		{"dir stored as blocks", func(m *Manifest) { m.Files[0].Stored = StoredParent }, "outside an incremental"},
		{"map on a whole file", func(m *Manifest) { m.Files[3].Blocks = "AQ==" }, "stored whole"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleIncremental()
			tt.mutate(m)
			body, err := EncodeManifest(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DecodeManifest(bytes.NewReader(body), false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// blockMapWith is a map of blocks blocks with the given ones set.
func blockMapWith(blocks int64, set ...int64) BlockMap {
	b := NewBlockMap(blocks)
	for _, i := range set {
		b.Set(i)
	}
	return b
}

func TestDecodeBlockMapBounds(t *testing.T) {
	if _, err := DecodeBlockMap(NewBlockMap(MaxBlockMapBlocks).String(), MaxBlockMapBlocks); err != nil {
		t.Fatalf("a 1 GiB segment's map: %v", err)
	}
	if _, err := DecodeBlockMap("", MaxBlockMapBlocks+1); err == nil {
		t.Fatal("a map past the bound was accepted")
	}
	long := strings.Repeat("A", 1<<20)
	if _, err := DecodeBlockMap(long, 8); err == nil {
		t.Fatal("a 1 MiB map for 8 blocks was accepted")
	}
	if bm, err := DecodeBlockMap("", 0); err != nil || bm.Count() != 0 {
		t.Fatalf("an empty file's map: %v", err)
	}
}
