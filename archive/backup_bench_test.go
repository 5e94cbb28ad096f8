package archive

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// benchDataDir makes a data directory of about size bytes whose relation
// files look like pgbench's: 8 KiB pages of short, similar tuples.
func benchDataDir(b *testing.B, size int64) string {
	b.Helper()
	dir := b.TempDir()
	writeTree(&testing.T{}, dir, map[string]string{"PG_VERSION": "15\n", "global/pg_control": "x"})
	page := make([]byte, 8192)
	var n int64
	for f := 0; n < size; f++ {
		p := filepath.Join(dir, "base", "5", fmt.Sprint(16384+f))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 4096 && n < size; i++ { // 32 MiB files
			for off := 24; off+120 <= len(page); off += 120 {
				row := uint32(n/120) + uint32(off)
				binary.LittleEndian.PutUint32(page[off:], row)
				binary.LittleEndian.PutUint32(page[off+4:], row%100000)
				copy(page[off+8:], "                                                                                    ")
			}
			if _, err := out.Write(page); err != nil {
				b.Fatal(err)
			}
			n += int64(len(page))
		}
		out.Close()
	}
	return dir
}

func benchConfig(b *testing.B, encrypt bool) (*Config, []age.Identity) {
	st, err := cloud.Open(context.Background(), "file://"+b.TempDir(), cloud.Options{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := &Config{Store: st, Codec: codec.Settings{Compression: codec.LZ4}}
	var ids []age.Identity
	if encrypt {
		id, _ := age.GenerateX25519Identity()
		cfg.Codec.Recipients = []age.Recipient{id.Recipient()}
		ids = []age.Identity{id}
	}
	return cfg, ids
}

// BenchmarkBackupParts measures the data path of backup-push (walk, tar,
// checksum, compress, encrypt, store) without PostgreSQL, and restore's
// (fetch, verify, decode, write, fsync) of the same parts.
func BenchmarkBackupParts(b *testing.B) {
	const size = 256 << 20
	src := benchDataDir(b, size)
	for _, encrypt := range []bool{false, true} {
		cfg, ids := benchConfig(b, encrypt)
		push := func(b *testing.B, name string) *Manifest {
			w, err := walkDataDir(src, "PG_15_1", nil)
			if err != nil {
				b.Fatal(err)
			}
			run := &backupRun{cfg: cfg, name: name, prog: newProgress("bench", w.Total, nil, 0)}
			plans := planParts(w, partTarget(w.Total, DefaultPartSize, 4))
			parts, files, err := run.uploadParts(context.Background(), plans, 4)
			run.prog.done()
			if err != nil {
				b.Fatal(err)
			}
			m := &Manifest{Name: run.name, Parts: parts, Files: files, FileCount: len(files)}
			for _, f := range files {
				m.DataSize += f.Size
			}
			return m
		}
		var last *Manifest
		b.Run(fmt.Sprintf("push/encrypt=%v", encrypt), func(b *testing.B) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				last = push(b, fmt.Sprintf("bench%d-%d", i, b.N))
			}
		})
		b.Run(fmt.Sprintf("restore/encrypt=%v", encrypt), func(b *testing.B) {
			if last == nil {
				last = push(b, "bench-restore")
			}
			b.ResetTimer()
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				dest := filepath.Join(b.TempDir(), "data")
				rcfg := *cfg
				rcfg.Identities = ids
				x := &extractor{cfg: &rcfg, m: last, roots: map[uint32]*os.Root{}, expect: map[string]*File{}}
				if err := x.openRoots(dest, nil); err != nil {
					b.Fatal(err)
				}
				for j := range last.Files {
					x.expect[last.Files[j].Path] = &last.Files[j]
				}
				x.prog = newProgress("bench", last.DataSize, nil, 0)
				err := x.extractAll(context.Background(), 4)
				x.prog.done()
				x.closeRoots()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
