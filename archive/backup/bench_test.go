package backup

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
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
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

func benchRepo(b *testing.B, encrypt bool) *repo.Repo {
	st, err := cloud.Open(context.Background(), "file://"+b.TempDir(), cloud.Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := &repo.Repo{Store: st, Codec: codec.Settings{Compression: codec.LZ4}}
	if encrypt {
		id, _ := age.GenerateX25519Identity()
		r.Codec.Recipients = []age.Recipient{id.Recipient()}
		r.Identities = []age.Identity{id}
	}
	return r
}

// BenchmarkBackupParts measures the data path of backup-push (walk, tar,
// checksum, compress, encrypt, store) without PostgreSQL, and the read
// path of the same parts through the repository (fetch, verify, decode,
// write, fsync).
func BenchmarkBackupParts(b *testing.B) {
	const size = 256 << 20
	src := benchDataDir(b, size)
	for _, encrypt := range []bool{false, true} {
		r := benchRepo(b, encrypt)
		push := func(b *testing.B, name string) *repo.Manifest {
			w, err := walkDataDir(src, "PG_15_1", nil)
			if err != nil {
				b.Fatal(err)
			}
			up := &uploader{r: r, name: name, prog: archive.NewProgress(nil).Start("bench", w.Total)}
			plans := planParts(w, partTarget(w.Total, DefaultPartSize, 4))
			parts, files, err := up.uploadParts(context.Background(), plans, 4)
			up.prog.Done()
			if err != nil {
				b.Fatal(err)
			}
			m := &repo.Manifest{Name: name, Parts: parts, Files: files, FileCount: len(files)}
			for _, f := range files {
				m.DataSize += f.Size
			}
			return m
		}
		var last *repo.Manifest
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
				if err := benchExtract(context.Background(), r, last, filepath.Join(b.TempDir(), "data"), 4); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchExtract writes the parts of m (all in the data directory) under
// dest, concurrency at a time, checking each file's CRC-32C and fsyncing
// it: what restore does with a part, without its bookkeeping.
func benchExtract(ctx context.Context, r *repo.Repo, m *repo.Manifest, dest string, concurrency int) error {
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	idx := m.Index()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for i := range m.Parts {
		g.Go(func() error {
			buf := make([]byte, copyBufSize)
			return r.ReadPart(gctx, m, i, idx, repo.PartOptions{}, func() repo.EntryFunc {
				return func(hdr *tar.Header, f *repo.File, body io.Reader) error {
					return benchWrite(root, hdr, f, body, buf)
				}
			})
		})
	}
	return g.Wait()
}

func benchWrite(root *os.Root, hdr *tar.Header, f *repo.File, body io.Reader, buf []byte) error {
	if f == nil {
		return fmt.Errorf("%s is not in the manifest", hdr.Name)
	}
	if f.Type == repo.TypeDir {
		return root.MkdirAll(f.Path, 0o700)
	}
	if f.Type != repo.TypeFile {
		return nil
	}
	if err := root.MkdirAll(path.Dir(f.Path), 0o700); err != nil {
		return err
	}
	out, err := root.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() { _ = out.Close() }() // closed, checked, below; this one is for the early returns
	var crc repo.CRC32C
	if _, err := io.CopyBuffer(io.MultiWriter(out, &crc), body, buf); err != nil {
		return err
	}
	if !crc.Matches(f) {
		return fmt.Errorf("%s fails its checksum", f.Path)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}
