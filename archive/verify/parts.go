package verify

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// maxPartProblems bounds what one damaged part reports.
const maxPartProblems = 20

// verifyParts reads every part of every backup, one backup at a time
// (its file list in memory, not every backup's), concurrency parts at a
// time.
func verifyParts(ctx context.Context, r *repo.Repo, backups []*repo.Manifest, out []*Backup, concurrency int) error {
	for i, summary := range backups {
		m, err := r.ReadManifest(ctx, summary.Name, false)
		if err != nil {
			if errors.Is(err, archive.ErrIntegrity) || errors.Is(err, archive.ErrNotInArchive) {
				out[i].Problems = append(out[i].Problems, Problem{Object: repo.BackupKey(summary.Name, repo.ManifestFile), Problem: trimWhere(err)})
				continue
			}
			return err
		}
		if err := verifyBackupParts(ctx, r, m, out[i], concurrency); err != nil {
			return err
		}
		if m.Incremental() {
			if err := checkAgainstParent(ctx, r, m, out[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkAgainstParent checks that what incremental backup m leaves to its
// parent is there: each file stored in the parent, or as some of its
// blocks, is a regular file of the parent long enough for every block m
// does not store. (The parent's own parts are checked as a backup of
// their own; the whole file's checksum needs the file assembled: restore
// checks it.) Two file lists are in memory at a time.
func checkAgainstParent(ctx context.Context, r *repo.Repo, m *repo.Manifest, bv *Backup) error {
	p, err := r.ReadManifest(ctx, m.Parent, false)
	if err != nil {
		if errors.Is(err, archive.ErrIntegrity) || errors.Is(err, archive.ErrNotInArchive) {
			bv.Problems = append(bv.Problems, Problem{Object: repo.BackupKey(m.Parent, repo.ManifestFile), Problem: trimWhere(err)})
			return nil
		}
		return err
	}
	files := p.Index()
	key := repo.BackupKey(m.Name, repo.ManifestFile)
	n := 0
	bad := func(format string, a ...any) {
		if n++; n <= maxPartProblems {
			bv.Problems = append(bv.Problems, Problem{Object: key, Problem: fmt.Sprintf(format, a...)})
		}
	}
	bs := int64(m.BlockSize)
	for i := range m.Files {
		f := &m.Files[i]
		if f.Stored != repo.StoredParent && f.Stored != repo.StoredBlocks {
			continue
		}
		pf := files[f.Path]
		if pf == nil || pf.Type != repo.TypeFile {
			bad("%s is left to the parent %s, which has no such file", f.Path, p.Name)
			continue
		}
		need := f.Size // StoredParent: the parent's file cut to Size
		if f.Stored == repo.StoredBlocks {
			need = 0
			bm, err := repo.DecodeBlockMap(f.Blocks, f.Size/bs)
			if err != nil {
				bad("%s: %v", f.Path, err)
				continue
			}
			for b := f.Size/bs - 1; b >= 0; b-- {
				if !bm.Has(b) {
					need = (b + 1) * bs // the last block taken from the parent
					break
				}
			}
		}
		if pf.Size < need {
			bad("%s needs the first %d bytes of its parent %s's file, which has %d", f.Path, need, p.Name, pf.Size)
		}
	}
	return nil
}

// verifyBackupParts reads the parts of one backup, largest first, so one
// big part does not run alone at the end.
func verifyBackupParts(ctx context.Context, r *repo.Repo, m *repo.Manifest, bv *Backup, concurrency int) error {
	files := m.Index()
	order := make([]int, len(m.Parts))
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return m.Parts[order[a]].StoredSize > m.Parts[order[b]].StoredSize })
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, idx := range order {
		g.Go(func() error {
			c, err := verifyPart(gctx, r, m, idx, files)
			if err != nil {
				return err
			}
			mu.Lock()
			bv.FilesChecked += c.checked
			bv.BlockFilesChecked += c.blockFiles
			bv.Problems = append(bv.Problems, c.probs...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	sort.SliceStable(bv.Problems, func(a, b int) bool { return bv.Problems[a].Object < bv.Problems[b].Object })
	return nil
}

// verifyPart streams one part (stored bytes -> SHA-256, decrypt,
// decompress, tar -> CRC-32C of each file) and compares it with the
// manifest. Memory stays bounded whatever the part's size. What is wrong
// with the part is in the check's problems; an error means verify could
// not read it.
func verifyPart(ctx context.Context, r *repo.Repo, m *repo.Manifest, idx int, files repo.FileIndex) (*partCheck, error) {
	key := repo.BackupKey(m.Name, m.Parts[idx].Name)
	c := &partCheck{key: key, idx: idx, buf: make([]byte, 256<<10), blockSize: int64(m.BlockSize)}
	err := r.ReadPart(ctx, m, idx, files, repo.PartOptions{LateCheck: true}, c.start)
	if err := c.readEnded(ctx, err, fmt.Sprintf("%s in %s", key, r.Store)); err != nil {
		return nil, err
	}
	if err == nil {
		c.checkAllSeen(files)
	}
	if p := m.Parts[idx]; p.Index != "" {
		// The block index restore --delta reads the part by: present,
		// the bytes the manifest records, and well formed.
		_, err := r.LoadBlockIndex(ctx, key, p, repo.PartsMustBeEncrypted(r, m))
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case repo.IsKeyErr(err), errors.Is(err, archive.ErrStore), archive.IsContextErr(err):
			return nil, err
		default:
			c.key = repo.IndexKey(key)
			c.bad("block index: %s", relative(err, fmt.Sprintf("%s in %s", repo.IndexKey(key), r.Store)))
			c.key = key
		}
	}
	return c, nil
}

// partCheck is what reading one part found.
type partCheck struct {
	key string // the part
	idx int
	buf []byte

	seen    map[string]bool
	checked int // regular files whose checksum matched
	// blockFiles: files of an incremental backup stored as some of their
	// blocks whose entry has the size the block map says (their checksum
	// is of the assembled file: restore checks it).
	blockFiles int
	blockSize  int64
	probs      []Problem
	crc        repo.CRC32C
}

// start begins (or, after a broken download, begins again) the check.
func (c *partCheck) start() repo.EntryFunc {
	c.seen, c.checked, c.blockFiles, c.probs = map[string]bool{}, 0, 0, nil
	return c.entry
}

func (c *partCheck) bad(format string, a ...any) {
	if len(c.probs) < maxPartProblems {
		c.probs = append(c.probs, Problem{Object: c.key, Problem: fmt.Sprintf(format, a...)})
	}
}

// entry compares one tar entry with its manifest record and notes what
// differs; it stops the part only when the stream cannot be read on.
func (c *partCheck) entry(hdr *tar.Header, f *repo.File, body io.Reader) error {
	name := repo.EntryPath(hdr)
	switch {
	case f == nil:
		c.bad("holds %q, which the manifest does not list", name)
		return nil
	case f.Part != c.idx:
		c.bad("holds %q, which the manifest puts in part %d", name, f.Part)
		return nil
	case c.seen[name]:
		c.bad("holds %q twice", name)
		return nil
	case f.Stored == repo.StoredParent:
		c.bad("holds %q, which the manifest says is its parent's", name)
		return nil
	}
	c.seen[name] = true
	switch {
	case f.Type == repo.TypeDir && hdr.Typeflag == tar.TypeDir:
	case f.Type == repo.TypeSymlink && hdr.Typeflag == tar.TypeSymlink:
		if hdr.Linkname != f.Link {
			c.bad("symlink %s points to %q, the manifest says %q", name, hdr.Linkname, f.Link)
		}
	case f.Type == repo.TypeFile && hdr.Typeflag == tar.TypeReg:
		return c.checkFile(name, f, hdr, body)
	default:
		c.bad("entry %s has tar type %q, the manifest says %q", name, hdr.Typeflag, archive.OrNone(f.Type))
	}
	return nil
}

// checkFile compares a regular file's CRC-32C and size with the manifest.
func (c *partCheck) checkFile(name string, f *repo.File, hdr *tar.Header, body io.Reader) error {
	if f.Stored == repo.StoredBlocks {
		return c.checkBlocks(name, f, hdr, body)
	}
	c.crc.Reset()
	if _, err := io.CopyBuffer(&c.crc, body, c.buf); err != nil { // #nosec G110 -- bounded by the tar entry's size, which must match the manifest
		return err
	}
	if !c.crc.Matches(f) || hdr.Size != f.Size {
		c.bad("file %s fails its checksum (CRC-32C %s over %d bytes, the manifest says %s over %d)", name, c.crc.Hex(), c.crc.Len(), f.CRC32C, f.Size)
		return nil
	}
	c.checked++
	return nil
}

// checkBlocks checks the entry of a file stored as some of its blocks:
// exactly the blocks its map sets.
func (c *partCheck) checkBlocks(name string, f *repo.File, hdr *tar.Header, body io.Reader) error {
	if c.blockSize <= 0 { // the manifest's validation refuses it
		c.bad("file %s is stored as blocks in a backup without a block size", name)
		return nil
	}
	bm, err := repo.DecodeBlockMap(f.Blocks, f.Size/c.blockSize)
	if err != nil {
		c.bad("file %s: %v", name, err)
		return nil
	}
	n, err := io.CopyBuffer(io.Discard, body, c.buf)
	if err != nil {
		return err
	}
	if want := bm.Count() * c.blockSize; n != want || hdr.Size != want {
		c.bad("file %s holds %d bytes of blocks, its block map says %d blocks of %d bytes", name, n, bm.Count(), c.blockSize)
		return nil
	}
	c.blockFiles++
	return nil
}

// checkAllSeen notes the files the manifest lists in the part that it
// does not hold.
func (c *partCheck) checkAllSeen(files repo.FileIndex) {
	var missing []string
	for path, f := range files {
		if f.Part == c.idx && !c.seen[path] && f.Stored != repo.StoredParent {
			missing = append(missing, path)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		c.bad("lacks %d file(s) the manifest lists in it, e.g. %s", len(missing), missing[0])
	}
}

// readEnded files how reading the part ended (where names it in errors):
// damage is a problem of the part; a missing part is the size check's; a
// failing store, a missing key or a cancellation stops verify.
func (c *partCheck) readEnded(ctx context.Context, err error, where string) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, archive.ErrNotInArchive):
		return nil // reported by the size check
	case repo.IsKeyErr(err), errors.Is(err, archive.ErrStore), archive.IsContextErr(err):
		return err
	case errors.Is(err, cloud.ErrChecksum):
		// The store's own checksum failing on the object is the object's
		// damage, not the transport's.
		c.bad("the store's own checksum of the object does not match its content: %s", relative(err, where))
	case errors.Is(err, codec.ErrCorrupt) && !errors.Is(err, archive.ErrIntegrity):
		c.bad("does not decode: %s", relative(err, where))
	default:
		c.bad("%s", relative(err, where))
	}
	return nil
}

// relative words err for the report, which files it under the object
// already: without the error class and the object's name in front.
func relative(err error, where string) string {
	s := strings.TrimPrefix(err.Error(), archive.ErrIntegrity.Error()+": ")
	s = strings.TrimPrefix(s, where)
	return strings.TrimLeft(s, ": ")
}
