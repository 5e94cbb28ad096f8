// Package backuptest builds test backups for the commands' tests (restore,
// verify): a data directory tree on disk, cut into tar parts, stored
// through the object layer, with a manifest; and a repository that signs
// and verifies as a database host and a restore host with one key pair
// would. Only tests import it.
package backuptest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// testEntry is one thing of a test data directory, as a backup stores it.
type testEntry struct {
	rel, abs string
	typ      string
	size     int64
	info     fs.FileInfo
	link     string
	spc      uint32
}

// walkTestTree lists src as backup-push would, minus its skip rules: the
// data directory, then each tablespace linked from pg_tblspc/<oid> (its
// PG_15_1 directory) under pg_tblspc/<oid>/.
func walkTestTree(t testing.TB, src string) (map[uint32][]testEntry, []repo.Tablespace) {
	t.Helper()
	out := map[uint32][]testEntry{}
	var spcs []repo.Tablespace
	var walk func(abs, rel string, spc uint32)
	walk = func(abs, rel string, spc uint32) {
		ents, err := os.ReadDir(abs)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			ca, cr := filepath.Join(abs, e.Name()), path.Join(rel, e.Name())
			te := testEntry{rel: cr, abs: ca, info: info, spc: spc}
			switch {
			case info.Mode()&fs.ModeSymlink != 0 && rel == "pg_tblspc":
				oid, _ := strconv.ParseUint(e.Name(), 10, 32)
				target, _ := os.Readlink(ca)
				spcs = append(spcs, repo.Tablespace{OID: uint32(oid), Location: target})
				root := filepath.Join(target, "PG_15_1")
				rinfo, err := os.Stat(root)
				if err != nil {
					t.Fatal(err)
				}
				r := cr + "/PG_15_1"
				out[uint32(oid)] = append(out[uint32(oid)], testEntry{rel: r, abs: root, typ: repo.TypeDir, info: rinfo, spc: uint32(oid)})
				walk(root, r, uint32(oid))
			case info.Mode()&fs.ModeSymlink != 0:
				te.typ = repo.TypeSymlink
				te.link, _ = os.Readlink(ca)
				out[spc] = append(out[spc], te)
			case info.IsDir():
				te.typ = repo.TypeDir
				out[spc] = append(out[spc], te)
				walk(ca, cr, spc)
			default:
				te.typ, te.size = repo.TypeFile, info.Size()
				out[spc] = append(out[spc], te)
			}
		}
	}
	walk(src, "", 0)
	return out, spcs
}

// PushOptions shape a test backup.
type PushOptions struct {
	// Indexed stores every part with its block index and every file's
	// tar offset, as backup-push does for a full backup.
	Indexed bool
	// RangeSize, when not 0, records the CRC-32C of every RangeSize bytes
	// of the relation files (paths whose last element is a number).
	RangeSize int64
}

// isRelation says whether p names a relation file's main fork.
func isRelation(p string) bool {
	_, err := strconv.ParseUint(path.Base(p), 10, 32)
	return err == nil
}

// rangeCRCs are the CRC-32C of each rangeSize bytes of data.
func rangeCRCs(data []byte, rangeSize int64) string {
	var crcs []uint32
	for off := int64(0); off < int64(len(data)); off += rangeSize {
		crcs = append(crcs, crc32.Checksum(data[off:min(off+rangeSize, int64(len(data)))], crc32.MakeTable(crc32.Castagnoli)))
	}
	return repo.EncodeRangeCRCs(crcs)
}

// tarPart writes the entries of one part as a tar stream.
func tarPart(t testing.TB, ents []testEntry, part int, o PushOptions) ([]byte, []repo.File) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var files []repo.File
	for _, e := range ents {
		f := repo.File{Path: e.rel, Type: e.typ, Part: part, Mode: fmt.Sprintf("%04o", e.info.Mode().Perm()), MTime: e.info.ModTime().UTC(), Link: e.link}
		hdr := &tar.Header{Name: e.rel, Mode: int64(e.info.Mode().Perm()), ModTime: e.info.ModTime()}
		var data []byte
		switch e.typ {
		case repo.TypeDir:
			hdr.Name, hdr.Typeflag = e.rel+"/", tar.TypeDir
		case repo.TypeSymlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		default:
			var err error
			if data, err = os.ReadFile(e.abs); err != nil {
				t.Fatal(err)
			}
			var crc repo.CRC32C
			_, _ = crc.Write(data)
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(data))
			f.Size, f.CRC32C = int64(len(data)), crc.Hex()
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == repo.TypeFile {
			if o.Indexed {
				f.TarOffset = int64(buf.Len())
			}
			if o.RangeSize > 0 && len(data) > 0 && isRelation(e.rel) {
				f.RangeCRCs = rangeCRCs(data, o.RangeSize)
			}
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), files
}

// Push stores a backup of src the way backup-push does, minus
// PostgreSQL: tar parts of about 64 bytes (a tablespace in parts of its
// own), then the manifest.
func Push(t testing.TB, r *repo.Repo, src, name string, mutate func(*repo.Manifest)) *repo.Manifest {
	t.Helper()
	return PushWith(t, r, src, name, PushOptions{}, mutate)
}

// PushWith is Push as o says.
func PushWith(t testing.TB, r *repo.Repo, src, name string, o PushOptions, mutate func(*repo.Manifest)) *repo.Manifest {
	t.Helper()
	ctx := context.Background()
	ents, spcs := walkTestTree(t, src)
	var plans [][]testEntry
	var planSpc []uint32
	for _, spc := range append([]uint32{0}, oids(spcs)...) {
		var cur []testEntry
		var size int64
		for _, e := range ents[spc] {
			if e.typ == repo.TypeFile && size > 0 && size+e.size > 64 {
				plans, planSpc = append(plans, cur), append(planSpc, spc)
				cur, size = nil, 0
			}
			cur = append(cur, e)
			size += e.size
		}
		if len(cur) > 0 {
			plans, planSpc = append(plans, cur), append(planSpc, spc)
		}
	}
	var parts []repo.Part
	var files []repo.File
	var dataSize int64
	for i, plan := range plans {
		body, fs := tarPart(t, plan, i, o)
		part := putPart(t, r, name, i, body, o.Indexed)
		n := 0
		for _, f := range fs {
			if f.Type == repo.TypeFile {
				n++
				dataSize += f.Size
			}
		}
		part.Tablespace, part.Files = planSpc[i], n
		parts = append(parts, part)
		files = append(files, fs...)
	}
	stop := time.Now().UTC()
	m := &repo.Manifest{Format: repo.ManifestFormat, Name: name, PGVersion: 150004, SystemIdentifier: "1", Timeline: 1,
		StartLSN: 0x2000028, StopLSN: 0x2000100, StartWAL: "000000010000000000000002", StopWAL: "000000010000000000000002",
		StartTime: stop, StopTime: stop, SegmentSize: 16 << 20, DataSize: dataSize, Tablespaces: spcs, Parts: parts, Files: files, FileCount: len(files),
		RangeSize: o.RangeSize, Encrypted: len(r.Codec.Recipients) > 0}
	if mutate != nil {
		mutate(m)
		// Written as it is, signed, even when WriteManifest would refuse it:
		// restore must not rely on the writer (or on reading) alone.
		body, err := repo.EncodeManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		meta := map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(body))}
		if err := r.PutBytes(ctx, repo.BackupKey(m.Name, repo.ManifestFile), body, cloud.PutOptions{Metadata: meta}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if err := r.WriteManifest(ctx, m, false); err != nil {
		t.Fatal(err)
	}
	return m
}

// PutPart stores a tar stream as part idx of backup name, with its sums
// object, as backup-push does.
func PutPart(t testing.TB, r *repo.Repo, name string, idx int, body []byte) repo.Part {
	t.Helper()
	return putPart(t, r, name, idx, body, false)
}

func putPart(t testing.TB, r *repo.Repo, name string, idx int, body []byte, indexed bool) repo.Part {
	t.Helper()
	key := repo.BackupKey(name, repo.PartName(idx))
	st, sums, err := r.PutChunked(context.Background(), key, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	}, repo.PutOptions{Indexed: indexed})
	if err != nil {
		t.Fatal(err)
	}
	p := repo.Part{Name: repo.PartName(idx), Size: st.Size, StoredSize: st.StoredSize, SHA256: st.SHA256, Sums: sums}
	if indexed {
		if st.Index == nil {
			t.Fatalf("part %d of %s: no block index", idx, name)
		}
		if p.Index, p.IndexSize, err = r.PutBlockIndex(context.Background(), key, st.Index); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// SignedRepo is a repository over st that signs what it writes and checks
// the proof of what it reads, as a database host and a restore host with
// the same key pair would.
func SignedRepo(t testing.TB, st cloud.Store) *repo.Repo {
	t.Helper()
	path := filepath.Join(t.TempDir(), "signing.key")
	vk, err := crypto.GenerateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(path, false)
	if err != nil {
		t.Fatal(err)
	}
	return &repo.Repo{Store: st, Sign: sk, Verify: []crypto.VerifyKey{vk}, Cluster: "1"}
}

func oids(spcs []repo.Tablespace) []uint32 {
	var out []uint32
	for _, ts := range spcs {
		out = append(out, ts.OID)
	}
	return out
}

func WriteTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if body == "/" {
			if err := os.MkdirAll(full, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// ForgeCRC32C rewrites the last 4 bytes of b (at least 4 long) so that its
// CRC-32C is want (8 hex digits): what anyone can do to a file whose only
// check is a CRC, as an attacker forging a part would.
func ForgeCRC32C(b []byte, want string) {
	target, err := strconv.ParseUint(want, 16, 32)
	if err != nil || len(b) < 4 {
		panic("ForgeCRC32C: bad arguments")
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	var rev [256]byte
	for i := range 256 {
		rev[tab[i]>>24] = byte(i)
	}
	// The table index each of the 4 steps must use to end at the target.
	f := ^uint32(target)
	var idx [4]byte
	for i := 3; i >= 0; i-- {
		idx[i] = rev[f>>24]
		f = (f ^ tab[idx[i]]) << 8
	}
	state := ^crc32.Update(0, tab, b[:len(b)-4])
	for i := range 4 {
		b[len(b)-4+i] = byte(state) ^ idx[i] // #nosec G115 -- the low byte is wanted: CRC bytes, one at a time
		state = state>>8 ^ tab[idx[i]]
	}
}

// PutWAL stores a WAL object for segment (or other pg_wal file) name,
// signed by r as wal-push signs: its content is a stand-in, its proof real.
func PutWAL(t testing.TB, r *repo.Repo, name string) {
	t.Helper()
	wf, err := archive.ParseWALName(name)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("wal " + name)
	sum := sha256.Sum256(body)
	meta := map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(body))}
	if err := r.PutBytes(context.Background(), repo.WALKey(wf), body, cloud.PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
}

// GetObject reads an object's stored bytes and metadata as they are, as a
// bucket writer copying it would.
func GetObject(t testing.TB, st cloud.Store, key string) ([]byte, map[string]string) {
	t.Helper()
	rc, info, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b, info.Metadata
}

// PutObject stores bytes and metadata as they are under key.
func PutObject(t testing.TB, st cloud.Store, key string, body []byte, meta map[string]string) {
	t.Helper()
	if err := st.Put(context.Background(), key, cloud.Bytes(body), cloud.PutOptions{Metadata: meta}); err != nil {
		t.Fatal(err)
	}
}
