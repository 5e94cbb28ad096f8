package wal

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// The per-segment cost of wal-push and wal-fetch in one process (no
// start-up), file store, signing on. Give a real segment with
// WALVAULT_BENCH_SEGMENT=/path/000000010000000000000002 (pgbench's WAL
// compresses about 8:1 with lz4); without it a synthetic, similarly
// compressible segment is used. Compare two builds with
//
//	go test -run '^$' -bench 'Segment' -count 6 ./archive/wal/ | benchstat
//
// It uses only wal's exported API, so the same file runs on older trees.

// benchSegment returns a segment file in dir: a copy of the real one when
// WALVAULT_BENCH_SEGMENT names one, else pgbench-like pages.
func benchSegment(b *testing.B, dir string) (string, int64) {
	b.Helper()
	const segSize = 16 << 20
	if src := os.Getenv("WALVAULT_BENCH_SEGMENT"); src != "" {
		data, err := os.ReadFile(src) // #nosec G304 -- the benchmark's input
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Base(src))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			b.Fatal(err)
		}
		return p, int64(len(data))
	}
	const segNo = 2
	data := make([]byte, segSize)
	le := binary.LittleEndian
	for page := 0; page < segSize; page += 8192 {
		le.PutUint16(data[page:], 0xD110)
		le.PutUint32(data[page+4:], 1)
		le.PutUint64(data[page+8:], uint64(segNo*segSize+page))
		// Records: a header, a few varying integers, a run of padding, as
		// pgbench's inserts of pgbench_accounts rows look.
		for off := page + 40; off+128 <= page+8192; off += 128 {
			row := uint32(off / 128)
			le.PutUint32(data[off:], 128)
			le.PutUint32(data[off+4:], row*2654435761)
			le.PutUint32(data[off+8:], row)
			le.PutUint32(data[off+12:], row%100000)
			copy(data[off+24:off+108], "                                                                                    ")
		}
	}
	le.PutUint16(data[2:], 0x0002) // long header
	le.PutUint64(data[24:], testSysID)
	le.PutUint32(data[32:], segSize)
	le.PutUint32(data[36:], 8192)
	p := filepath.Join(dir, archive.SegmentName(1, segNo, segSize))
	if err := os.WriteFile(p, data, 0o600); err != nil {
		b.Fatal(err)
	}
	return p, segSize
}

func benchRepo(b *testing.B, encrypt bool) *repo.Repo {
	b.Helper()
	st, err := cloud.Open(context.Background(), "file://"+b.TempDir(), cloud.Options{})
	if err != nil {
		b.Fatal(err)
	}
	keyFile := filepath.Join(b.TempDir(), "sign.key")
	vk, err := crypto.GenerateSigningKey(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(keyFile, false)
	if err != nil {
		b.Fatal(err)
	}
	r := &repo.Repo{Store: st, Codec: codec.Settings{Compression: codec.LZ4}, Sign: sk, Verify: []crypto.VerifyKey{vk}}
	if encrypt {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			b.Fatal(err)
		}
		r.Codec.Recipients = []age.Recipient{id.Recipient()}
		r.Identities = []age.Identity{id}
	}
	return r
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// varies far less than wall time, and it is what the archiver takes from
// the database.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op b.N times and reports its CPU time per op besides.
func loop(b *testing.B, size int64, op func()) {
	b.SetBytes(size)
	start := cpuTime(b)
	for b.Loop() {
		op()
	}
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkPushSegment: one new segment stored (read, checksum, compress,
// encrypt, sign, write, fsync), and one already stored (the idempotency
// check of a repeated archive_command).
func BenchmarkPushSegment(b *testing.B) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		encrypt bool
	}{{"lz4", false}, {"lz4+age", true}} {
		r := benchRepo(b, tc.encrypt)
		path, size := benchSegment(b, b.TempDir())
		key := repo.WALKey(mustParse(b, filepath.Base(path)))
		b.Run("new/"+tc.name, func(b *testing.B) {
			loop(b, size, func() {
				b.StopTimer()
				if err := r.Store.Delete(ctx, key); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := Push(ctx, r, path, PushOptions{Concurrency: 1}); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run("again/"+tc.name, func(b *testing.B) {
			loop(b, size, func() {
				res, err := Push(ctx, r, path, PushOptions{Concurrency: 1})
				if err != nil || !res.Already {
					b.Fatal(res, err)
				}
			})
		})
		b.Run("fetch/"+tc.name, func(b *testing.B) {
			dest := filepath.Join(b.TempDir(), "RECOVERYXLOG")
			if _, err := Push(ctx, r, path, PushOptions{Concurrency: 1}); err != nil {
				b.Fatal(err)
			}
			loop(b, size, func() {
				if _, err := Fetch(ctx, r, filepath.Base(path), dest, FetchOptions{}); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func mustParse(b *testing.B, name string) archive.WALFile {
	wf, err := archive.ParseWALName(name)
	if err != nil {
		b.Fatal(err)
	}
	return wf
}
