package backuptest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
)

// Synthetic incremental backups, built by hand as the stored contract
// (archive/repo/manifest.go) describes them: chains for retention's,
// verify's and backup-list's tests.

// Incremental stores, like Backup, a backup from segment start to stop of
// tli, as an incremental whose parent is the stored backup parent: its
// chain and parent manifest digest are taken from what the store holds.
func (s *Synth) Incremental(name, parent string, tli uint32, start, stop uint64, began, ended time.Time, permanent bool, mutate ...func(*repo.Manifest)) *repo.Manifest {
	s.T.Helper()
	rc, _, err := s.R.Store.Get(s.Ctx, repo.BackupKey(parent, repo.ManifestFile))
	if err != nil {
		s.T.Fatal(err)
	}
	body, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		s.T.Fatal(err)
	}
	pm, err := repo.DecodeManifest(bytes.NewReader(body), true)
	if err != nil {
		s.T.Fatal(err)
	}
	sum := sha256.Sum256(body)
	link := func(m *repo.Manifest) {
		MakeIncremental(m, pm, hex.EncodeToString(sum[:]))
	}
	return s.Backup(name, tli, start, stop, began, ended, permanent, append([]func(*repo.Manifest){link}, mutate...)...)
}

// MakeIncremental turns m into an incremental backup of parent, whose
// manifest.json has SHA-256 parentSum.
func MakeIncremental(m, parent *repo.Manifest, parentSum string) {
	m.Format, m.Type, m.BlockSize = max(m.Format, repo.ManifestFormatIncremental), repo.BackupIncremental, BlockSize
	m.Parent, m.ParentManifestSHA256 = parent.Name, parentSum
	m.Chain = append([]string{parent.Name}, parent.Chain...)
	m.SystemIdentifier, m.Timeline = parent.SystemIdentifier, parent.Timeline
}

// BlockSize is the block size of the synthetic incrementals.
const BlockSize = 8192

// ChainFile is one regular file of a backup built by PushLink.
type ChainFile struct {
	Path    string
	Content []byte // the whole file as of this backup
	// Stored is where the backup keeps it (repo.StoredWhole,
	// repo.StoredBlocks, repo.StoredParent); Blocks are the blocks stored
	// here with StoredBlocks.
	Stored string
	Blocks []int64
}

// PushLink stores a backup of files in one part through the object layer,
// then its manifest: a full one when parent is "", else an incremental of
// the stored backup parent (its manifest read back for the digest), with
// the files stored as each ChainFile says. The full starts at segment
// 0x20 of 1 MiB segments, each link two segments later than its parent.
func PushLink(t testing.TB, r *repo.Repo, name, parent string, files []ChainFile, mutate func(*repo.Manifest)) *repo.Manifest {
	t.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	mf := []repo.File{{Path: "base", Type: repo.TypeDir, Mode: "0700", MTime: t0}}
	if err := tw.WriteHeader(&tar.Header{Name: "base/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: t0}); err != nil {
		t.Fatal(err)
	}
	var dataSize int64
	for _, f := range files {
		var crc repo.CRC32C
		_, _ = crc.Write(f.Content)
		rf := repo.File{Path: f.Path, Size: int64(len(f.Content)), Mode: "0600", MTime: t0, CRC32C: crc.Hex(), Stored: f.Stored}
		var entry []byte
		switch f.Stored {
		case repo.StoredParent:
			mf = append(mf, rf)
			continue
		case repo.StoredBlocks:
			bm := repo.NewBlockMap(rf.Size / BlockSize)
			for _, b := range f.Blocks {
				bm.Set(b)
			}
			for b := int64(0); b < rf.Size/BlockSize; b++ {
				if bm.Has(b) {
					entry = append(entry, f.Content[b*BlockSize:(b+1)*BlockSize]...)
				}
			}
			rf.Blocks = bm.String()
		default:
			entry = f.Content
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.Path, Typeflag: tar.TypeReg, Mode: 0o600, ModTime: t0, Size: int64(len(entry))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(entry); err != nil {
			t.Fatal(err)
		}
		dataSize += int64(len(entry))
		mf = append(mf, rf)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	body := buf.Bytes()
	part := PutPart(t, r, name, 0, body)
	part.Files = len(files)
	seg := int64(SynthSegSize)
	m := &repo.Manifest{Format: repo.ManifestFormat, Name: name, PGVersion: 150004, SystemIdentifier: "1", Timeline: 1,
		StartLSN: archive.LSN(0x20*seg + 0x28), SegmentSize: seg, DataSize: dataSize, StoredSize: part.StoredSize,
		StartTime: t0, Parts: []repo.Part{part},
		Files: mf, FileCount: len(mf)}
	if parent != "" {
		pm, sum, err := r.ReadManifestSum(ctx, parent, true)
		if err != nil {
			t.Fatal(err)
		}
		MakeIncremental(m, pm, sum)
		m.StartLSN = pm.StartLSN + archive.LSN(2*seg)
		m.StartTime = pm.StartTime.Add(time.Hour)
	}
	m.StopLSN = m.StartLSN + 0x100
	m.StopTime = m.StartTime.Add(time.Minute)
	m.StartWAL, m.StopWAL = archive.SegmentOf(m.Timeline, m.StartLSN, seg), archive.SegmentOf(m.Timeline, m.StopLSN, seg)
	if mutate != nil {
		mutate(m)
	}
	if err := r.WriteManifest(ctx, m, false); err != nil {
		t.Fatal(err)
	}
	return m
}
