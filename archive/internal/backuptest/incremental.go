package backuptest

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/walvault/walvault/archive/repo"
)

// IncFile is one file of a hand-made full or incremental backup.
type IncFile struct {
	Path string
	// Content is the whole file as of this backup: the manifest's Size
	// and CRC-32C are of it, and stored blocks are cut from it.
	Content []byte
	// Stored is repo.StoredWhole, repo.StoredBlocks or repo.StoredParent.
	Stored string
	// Blocks are the blocks stored, for repo.StoredBlocks.
	Blocks []int64
	// Data, when set, is what the part holds instead of what Content and
	// Blocks say: a backup that stored something else than it claims.
	Data []byte
}

// PushChainLink stores a backup of files in one part, signed like
// backup-push's: a full backup when parent is "", else an incremental on
// parent (whose manifest is read for its SHA-256 and chain). mutate, when
// set, changes the manifest before it is written.
func PushChainLink(t testing.TB, r *repo.Repo, name, parent string, bs int, when time.Time, files []IncFile, mutate func(*repo.Manifest)) *repo.Manifest {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var list []repo.File
	for _, f := range files {
		var crc repo.CRC32C
		_, _ = crc.Write(f.Content)
		rf := repo.File{Path: f.Path, Size: int64(len(f.Content)), Mode: "0600", MTime: when, CRC32C: crc.Hex(), Stored: f.Stored}
		data := f.Content
		switch f.Stored {
		case repo.StoredParent:
			data = nil
		case repo.StoredBlocks:
			bm := repo.NewBlockMap(int64(len(f.Content) / bs))
			data = nil
			for _, b := range f.Blocks {
				bm.Set(b)
			}
			for b := int64(0); b < int64(len(f.Content)/bs); b++ {
				if bm.Has(b) {
					data = append(data, f.Content[b*int64(bs):(b+1)*int64(bs)]...)
				}
			}
			rf.Blocks = bm.String()
		}
		if f.Data != nil {
			data = f.Data
		}
		list = append(list, rf)
		if f.Stored == repo.StoredParent {
			continue
		}
		hdr := &tar.Header{Name: f.Path, Mode: 0o600, Size: int64(len(data)), ModTime: when, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	body := buf.Bytes()
	part := PutPart(t, r, name, 0, body)
	part.Files = len(files)
	var size int64
	for _, f := range list {
		size += f.Size
	}
	m := &repo.Manifest{Format: repo.ManifestFormat, Name: name, PGVersion: 150004, SystemIdentifier: "1", Timeline: 1,
		StartLSN: 0x2000028, StopLSN: 0x2000100, StartWAL: "000000010000000000000002", StopWAL: "000000010000000000000002",
		StartTime: when, StopTime: when, SegmentSize: 16 << 20, DataSize: size, BlockSize: bs, DataChecksums: "on",
		Parts: []repo.Part{part},
		Files: list, FileCount: len(list)}
	if parent != "" {
		pm, sum, err := r.ReadManifestSum(ctx, parent, false)
		if err != nil {
			t.Fatal(err)
		}
		m.Type, m.Parent, m.ParentManifestSHA256 = repo.BackupIncremental, parent, sum
		m.Chain = append([]string{parent}, pm.Chain...)
	}
	if mutate != nil {
		mutate(m)
	}
	if err := r.WriteManifest(ctx, m, true); err != nil {
		t.Fatal(err)
	}
	return m
}
