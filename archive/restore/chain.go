package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// This file restores an incremental backup: each file is assembled in
// place from the links of its chain, newest first, every link's parts
// downloaded in parallel, nothing staged.

// link is one backup of a chain: links[0] is the one restored, the full
// backup last.
type link struct {
	m     *repo.Manifest
	files repo.FileIndex
}

// loadChain reads the ancestors of incremental m, each checked against
// the SHA-256 its child recorded of its manifest, before anything is
// written.
func loadChain(ctx context.Context, r *repo.Repo, m *repo.Manifest) ([]link, error) {
	links := []link{{m: m, files: m.Index()}}
	child := m
	for i, name := range m.Chain {
		anc, sum, err := r.ReadManifestSum(ctx, name, false)
		switch {
		case errors.Is(err, archive.ErrNotInArchive):
			return nil, fmt.Errorf("%w: backup %s needs its ancestor %s, which is not in %s (deleted or never completed)", archive.ErrIntegrity, m.Name, name, r.Store)
		case err != nil:
			return nil, fmt.Errorf("backup %s needs its ancestor %s: %w", m.Name, name, err)
		}
		bad := func(why string) error {
			return fmt.Errorf("%w: backup %s cannot be restored: its ancestor %s %s", archive.ErrIntegrity, m.Name, name, why)
		}
		switch {
		case sum != child.ParentManifestSHA256:
			return nil, bad(fmt.Sprintf("is not the backup %s was taken against (manifest SHA-256 %.12s…, %s recorded %.12s…)", child.Name, sum, child.Name, child.ParentManifestSHA256))
		case anc.SystemIdentifier != m.SystemIdentifier || anc.Timeline != m.Timeline:
			return nil, bad("is of another cluster or timeline")
		case !slices.Equal(anc.Chain, child.Chain[1:]):
			return nil, bad("has another chain than its child records")
		case anc.Incremental() && (anc.BlockSize != m.BlockSize || i == len(m.Chain)-1):
			return nil, bad("is an incremental with another block size, or where the full backup should be")
		case !anc.Incremental() && i != len(m.Chain)-1:
			return nil, bad("is a full backup in the middle of the chain")
		}
		links = append(links, link{m: anc, files: anc.Index()})
		child = anc
	}
	return links, nil
}

// target is one file being assembled.
type target struct {
	f    *repo.File // the restored backup's record
	oid  uint32
	root *os.Root
	rel  string // its path in root
	tmp  string // where it is assembled, until it is checked
	mu   sync.Mutex
	left int // pieces not yet written
	// sum: the CRC-32C of what was written, when one whole entry wrote
	// all of it (no need to read the file back).
	sum *repo.CRC32C
}

// piece is what one link's entry gives to a target.
type piece struct {
	t     *target
	link  int           // index in the chain
	entry *repo.File    // the link's record
	take  repo.BlockMap // the blocks of the target to write from it; nil: all
	// blocks: the entry holds these blocks of the file (StoredBlocks);
	// nil: the entry is the whole file.
	blocks repo.BlockMap
}

// partJob is one part of one link, with the pieces it supplies.
type partJob struct {
	link   int
	part   int
	pieces map[string]*piece // by path
}

// resolve decides, for every file of links[0], which link supplies each of
// its blocks: newest first, until a link stores the file whole.
func resolve(links []link, t *target) ([]*piece, error) {
	m := links[0].m
	bs := int64(m.BlockSize)
	size := t.f.Size
	nb := (size + bs - 1) / bs
	var need repo.BlockMap // nil: all nb blocks
	var out []*piece
	for li, l := range links {
		lf := l.files[t.f.Path]
		where := func(why string) error {
			return fmt.Errorf("%w: backup %s cannot be restored: %s takes %s from %s, which %s", archive.ErrIntegrity, m.Name, links[max(li-1, 0)].m.Name, t.f.Path, l.m.Name, why)
		}
		if lf == nil || lf.Type != repo.TypeFile {
			return nil, where("does not have it")
		}
		if li > 0 && lastNeeded(need, nb, bs, size) > lf.Size {
			return nil, where(fmt.Sprintf("has only %d bytes of it", lf.Size))
		}
		switch lf.Stored {
		case repo.StoredWhole:
			return append(out, &piece{t: t, link: li, entry: lf, take: need}), nil
		case repo.StoredParent:
			continue
		case repo.StoredBlocks:
		default:
			return nil, where("stores it in an unknown way")
		}
		blocks, err := repo.DecodeBlockMap(lf.Blocks, lf.Size/int64(l.m.BlockSize))
		if err != nil || int64(l.m.BlockSize) != bs {
			return nil, where("has a bad block map for it")
		}
		take, rest := repo.NewBlockMap(nb), repo.NewBlockMap(nb)
		var nTake, nRest int
		for i := int64(0); i < nb; i++ {
			if need != nil && !need.Has(i) {
				continue
			}
			if blocks.Has(i) {
				take.Set(i)
				nTake++
			} else {
				rest.Set(i)
				nRest++
			}
		}
		if nTake > 0 {
			out = append(out, &piece{t: t, link: li, entry: lf, take: take, blocks: blocks})
		}
		if nRest == 0 {
			return out, nil
		}
		need = rest
	}
	return nil, fmt.Errorf("%w: backup %s cannot be restored: no backup of its chain stores all of %s", archive.ErrIntegrity, m.Name, t.f.Path)
}

// lastNeeded is the end, in bytes, of the last block still needed.
func lastNeeded(need repo.BlockMap, nb, bs, size int64) int64 {
	for i := nb - 1; i >= 0; i-- {
		if need == nil || need.Has(i) {
			return min((i+1)*bs, size)
		}
	}
	return 0
}

// spcOfPath is the tablespace whose directory holds manifest path p (0:
// the data directory): what a file stored in the parent, with no part of
// its own, is placed by.
func spcOfPath(m *repo.Manifest, p string) uint32 {
	rest, ok := strings.CutPrefix(p, "pg_tblspc/")
	if !ok {
		return 0
	}
	num, _, ok := strings.Cut(rest, "/")
	if !ok {
		return 0
	}
	oid, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0
	}
	for _, ts := range m.Tablespaces {
		if uint64(ts.OID) == oid {
			return ts.OID
		}
	}
	return 0
}

// chainPlan is what a restore of an incremental reads from where.
type chainPlan struct {
	links   []link
	targets []*target // the files of links[0], in manifest order
	jobs    map[[2]int]*partJob
}

// planChain resolves every file of the chain's newest link (but those
// kept says stay as they are: a delta restore's) and checks that the
// parts it needs are all in the store, before anything is written.
func planChain(ctx context.Context, r *repo.Repo, links []link, kept func(string) bool) (*chainPlan, error) {
	m := links[0].m
	plan := &chainPlan{links: links, jobs: map[[2]int]*partJob{}}
	for i := range m.Files {
		f := &m.Files[i]
		if f.Type != repo.TypeFile || kept != nil && kept(f.Path) {
			continue
		}
		t := &target{f: f}
		pieces, err := resolve(links, t)
		if err != nil {
			return nil, err
		}
		t.left = len(pieces)
		plan.targets = append(plan.targets, t)
		for _, p := range pieces {
			k := [2]int{p.link, p.entry.Part}
			j := plan.jobs[k]
			if j == nil {
				j = &partJob{link: p.link, part: p.entry.Part, pieces: map[string]*piece{}}
				plan.jobs[k] = j
			}
			j.pieces[f.Path] = p
		}
	}
	need := map[int]map[string]bool{}
	for _, j := range plan.jobs {
		if need[j.link] == nil {
			need[j.link] = map[string]bool{}
		}
		need[j.link][links[j.link].m.Parts[j.part].Name] = true
	}
	for li, parts := range need {
		name := links[li].m.Name
		prefix := repo.BackupKey(name, "")
		err := r.Store.List(ctx, prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
			delete(parts, strings.TrimPrefix(o.Key, prefix))
			return nil
		})
		if err != nil {
			return nil, archive.StoreErr(fmt.Errorf("%s: listing %s: %w", r.Store, prefix, err))
		}
		for part := range parts {
			return nil, fmt.Errorf("%w: backup %s: %s in %s is missing: backup %s cannot be restored", archive.ErrIntegrity, name, repo.BackupKey(name, part), r.Store, m.Name)
		}
	}
	return plan, nil
}

// assembleChain restores incremental x.m as plan says.
func (x *extractor) assembleChain(ctx context.Context, plan *chainPlan, concurrency int) error {
	for _, f := range x.m.Files {
		if f.Type == repo.TypeDir {
			oid, root, rel := x.locate(f)
			if err := x.mkdirAll(oid, root, rel); err != nil {
				return err
			}
		}
	}
	// Every file exists at its full size before any link writes into it.
	for _, t := range plan.targets {
		t.oid, t.root, t.rel = x.locateFinal(*t.f)
		t.tmp = tempName(t.rel)
		if err := x.create(t); err != nil {
			return err
		}
	}
	sy := startSyncer(concurrency)
	var errFirst error
	for _, t := range plan.targets {
		if t.left == 0 {
			if err := x.finishTarget(t, sy.q); err != nil {
				errFirst = err
				break
			}
		}
	}
	if errFirst == nil {
		errFirst = x.runJobs(ctx, plan.links, plan.jobs, concurrency, sy.q)
	}
	if serr := sy.stop(); errFirst == nil {
		errFirst = serr
	}
	return errFirst
}

// runJobs downloads every part that supplies something, largest first,
// concurrency at a time.
func (x *extractor) runJobs(ctx context.Context, links []link, jobs map[[2]int]*partJob, concurrency int, syncq chan<- *os.File) error {
	list := make([]*partJob, 0, len(jobs))
	for _, j := range jobs {
		list = append(list, j)
	}
	sort.Slice(list, func(a, b int) bool {
		pa, pb := links[list[a].link].m.Parts[list[a].part], links[list[b].link].m.Parts[list[b].part]
		if pa.Size != pb.Size {
			return pa.Size > pb.Size
		}
		return list[a].link < list[b].link || list[a].link == list[b].link && list[a].part < list[b].part
	})
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, j := range list {
		g.Go(func() error {
			return x.runJob(gctx, links[j.link], j, syncq)
		})
	}
	return g.Wait()
}

// runJob reads one part and writes the pieces it supplies; the files
// whose last piece it was are then checked.
func (x *extractor) runJob(ctx context.Context, l link, j *partJob, syncq chan<- *os.File) error {
	p := l.m.Parts[j.part]
	where := fmt.Sprintf("backup %s: %s in %s", l.m.Name, repo.BackupKey(l.m.Name, p.Name), x.r.Store)
	buf := make([]byte, copyBufSize)
	var seen map[string]bool
	err := x.r.ReadPart(ctx, l.m, j.part, l.files, x.partOptions(), func() repo.EntryFunc {
		// A download that broke midway starts over; writing the same
		// blocks again is harmless.
		seen = map[string]bool{}
		return func(hdr *tar.Header, f *repo.File, body io.Reader) error {
			name := repo.EntryPath(hdr)
			if f == nil || f.Part != j.part {
				return fmt.Errorf("%w: %s: entry %q is not in the manifest for this part", archive.ErrIntegrity, where, name)
			}
			pc := j.pieces[name]
			if pc == nil || f.Type != repo.TypeFile {
				return nil // a directory, a symlink, or content a newer link supplies
			}
			if seen[name] {
				return fmt.Errorf("%w: %s: entry %q appears twice", archive.ErrIntegrity, where, name)
			}
			seen[name] = true
			return x.writePiece(pc, hdr, body, buf, where)
		}
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return fmt.Errorf("%w: %s is missing", archive.ErrIntegrity, where)
	}
	if err != nil {
		return err
	}
	for name, pc := range j.pieces {
		if !seen[name] {
			return fmt.Errorf("%w: %s lacks %s, which its manifest places there", archive.ErrIntegrity, where, name)
		}
		t := pc.t
		t.mu.Lock()
		t.left--
		done := t.left == 0
		t.mu.Unlock()
		if done {
			if err := x.finishTarget(t, syncq); err != nil {
				return err
			}
		}
	}
	return nil
}

// create makes a target file, empty, at its final size, under its
// temporary name.
func (x *extractor) create(t *target) error {
	if dir := path.Dir(t.rel); dir != "." {
		if err := x.mkdirAll(t.oid, t.root, dir); err != nil {
			return err
		}
	}
	perm := fs.FileMode(t.f.Perm() & 0o777)
	out, err := createTemp(t.root, t.tmp, perm)
	if err != nil {
		return err
	}
	err = out.Truncate(t.f.Size)
	if err == nil && perm&0o077 != 0 {
		err = out.Chmod(perm)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// writePiece writes what entry body supplies to its target, in place.
func (x *extractor) writePiece(pc *piece, hdr *tar.Header, body io.Reader, buf []byte, where string) error {
	t, e := pc.t, pc.entry
	bs := int64(x.m.BlockSize)
	want := e.Size
	if pc.blocks != nil {
		want = pc.blocks.Count() * bs
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size != want {
		return fmt.Errorf("%w: %s: %s is %d bytes in the part, its manifest says %d", archive.ErrIntegrity, where, e.Path, hdr.Size, want)
	}
	out, err := t.root.OpenFile(t.tmp, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s/%s: %w", t.root.Name(), t.tmp, err)
	}
	if pc.blocks == nil {
		var sum *repo.CRC32C
		if pc.take == nil { // the only piece: it writes the whole file
			sum = &repo.CRC32C{}
		}
		err = x.writeWhole(out, pc, body, buf, bs, sum)
		t.mu.Lock()
		t.sum = sum
		t.mu.Unlock()
	} else {
		err = x.writeBlocks(out, pc, body, buf, bs)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeWhole copies the blocks pc takes from a whole file's entry, which
// may be shorter than the file (it grew since) or longer (it was cut).
// sum, when set, sums what is written.
func (x *extractor) writeWhole(out *os.File, pc *piece, body io.Reader, buf []byte, bs int64, sum *repo.CRC32C) error {
	size := min(pc.t.f.Size, pc.entry.Size)
	if int64(len(buf)) < bs {
		buf = make([]byte, bs)
	}
	chunk := buf[:int64(len(buf))/bs*bs]
	for off := int64(0); off < size; {
		n := min(int64(len(chunk)), size-off)
		if _, err := io.ReadFull(body, chunk[:n]); err != nil {
			return err
		}
		if pc.take == nil {
			if sum != nil {
				_, _ = sum.Write(chunk[:n])
			}
			if _, err := out.WriteAt(chunk[:n], off); err != nil {
				return err
			}
		} else {
			// Runs of taken blocks, one write each.
			for b := int64(0); b < n; {
				if !pc.take.Has((off + b) / bs) {
					b += bs
					continue
				}
				e := b
				for e < n && pc.take.Has((off+e)/bs) {
					e += bs
				}
				if _, err := out.WriteAt(chunk[b:min(e, n)], off+b); err != nil {
					return err
				}
				b = e
			}
		}
		x.prog.AddRead(n)
		off += n
	}
	return nil
}

// writeBlocks writes the blocks pc takes from a block entry, runs of
// consecutive ones in one write.
func (x *extractor) writeBlocks(out *os.File, pc *piece, body io.Reader, buf []byte, bs int64) error {
	size := pc.t.f.Size
	if int64(len(buf)) < bs {
		buf = make([]byte, bs)
	}
	run := buf[:len(buf)/int(bs)*int(bs)]
	var runAt, runLen int64 // the run's first block and its length in bytes
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		n := min(runLen, size-runAt*bs)
		_, err := out.WriteAt(run[:n], runAt*bs)
		x.prog.AddRead(n)
		runLen = 0
		return err
	}
	nb := int64(len(pc.blocks)) * 8
	for i := int64(0); i < nb; i++ {
		if !pc.blocks.Has(i) {
			continue
		}
		want := pc.take.Has(i) && i*bs < size
		if !want || runLen > 0 && (i != runAt+runLen/bs || runLen == int64(len(run))) {
			if err := flush(); err != nil {
				return err
			}
		}
		if !want {
			if _, err := io.CopyN(io.Discard, body, bs); err != nil {
				return err
			}
			continue
		}
		if runLen == 0 {
			runAt = i
		}
		if _, err := io.ReadFull(body, run[runLen:runLen+bs]); err != nil {
			return err
		}
		runLen += bs
	}
	return flush()
}

// finishTarget checks an assembled file against the restored backup's
// record, sets its mtime, puts it in place, and hands it to the syncer.
func (x *extractor) finishTarget(t *target, syncq chan<- *os.File) error {
	in, err := t.root.OpenFile(t.tmp, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	t.mu.Lock()
	crc := t.sum
	t.mu.Unlock()
	if crc == nil {
		crc = &repo.CRC32C{}
		if _, err := io.Copy(crc, in); err != nil {
			_ = in.Close()
			return fmt.Errorf("reading back %s/%s: %w", t.root.Name(), t.tmp, err)
		}
	}
	if !crc.Matches(t.f) {
		_ = in.Close()
		return fmt.Errorf("%w: backup %s: %s as assembled from its chain fails its checksum (CRC-32C %s over %d bytes, the manifest says %s over %d)",
			archive.ErrIntegrity, x.m.Name, t.f.Path, crc.Hex(), crc.Len(), t.f.CRC32C, t.f.Size)
	}
	if err := t.root.Chtimes(t.tmp, t.f.MTime, t.f.MTime); err != nil {
		_ = in.Close()
		return err
	}
	if err := x.place(t.oid, t.root, t.tmp, t.rel); err != nil {
		_ = in.Close()
		return err
	}
	syncq <- in
	return nil
}
