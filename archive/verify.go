package archive

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// VerifyOptions tune verify.
type VerifyOptions struct {
	// Backup limits the check to one backup; "" checks them all.
	Backup string
	// Full downloads, decrypts and decompresses every part and checks the
	// SHA-256 of each stored part and the CRC-32C of each file in it.
	// Without it, parts are checked for presence and size only.
	Full bool
	// Concurrency is how many parts are read at once (Full).
	Concurrency int
}

// Problem is one thing verify found wrong, naming the object.
type Problem struct {
	Object  string `json:"object"`
	Problem string `json:"problem"`
}

func (p Problem) String() string { return p.Object + ": " + p.Problem }

// TimelineReach is how far recovery from a backup gets on one timeline.
type TimelineReach struct {
	Timeline     uint32    `json:"timeline"`
	RestorableTo *WALPoint `json:"restorable_to"`
	// Gap is the first gap on the way, when WAL follows it.
	Gap *WALGap `json:"gap,omitempty"`
	// Newest is the newest segment archived on this timeline.
	Newest string `json:"newest,omitempty"`
}

// BackupVerify is verify's finding for one backup.
type BackupVerify struct {
	Name         string    `json:"name"`
	Timeline     uint32    `json:"timeline"`
	StartWAL     string    `json:"start_wal"`
	StopWAL      string    `json:"stop_wal"`
	StopTime     time.Time `json:"stop_time"`
	Permanent    bool      `json:"permanent"`
	Checked      string    `json:"checked"` // "sizes" or "full"
	Parts        int       `json:"parts"`
	StoredSize   int64     `json:"stored_size"`
	FilesChecked int       `json:"files_checked"`
	// Consistent: the WAL from the backup's start to its stop is archived.
	Consistent bool `json:"consistent"`
	// RestorableTo is the latest point recovery reaches on the newest
	// timeline the backup can follow; Timelines has every one.
	RestorableTo *WALPoint       `json:"restorable_to"`
	Timelines    []TimelineReach `json:"timelines"`
	OK           bool            `json:"ok"`
	Problems     []Problem       `json:"problems"`
}

// TimelineVerify is the WAL continuity of one timeline over the range the
// checked backups need.
type TimelineVerify struct {
	Timeline uint32 `json:"timeline"`
	First    string `json:"first"` // first segment needed
	Last     string `json:"last"`  // last segment checked (the newest archived, or a switch point)
	// Ranges are the runs of segments needed (a permanent backup kept
	// alone needs only its own WAL, an island before the newer backups').
	Ranges   []SegmentSpan `json:"ranges"`
	Segments uint64        `json:"segments"` // archived segments in the ranges
	Gaps     []WALGap      `json:"gaps"`
}

// SegmentSpan is a run of segments, first to last.
type SegmentSpan struct {
	First string `json:"first"`
	Last  string `json:"last"`
}

// VerifyReport is everything verify found. OK only when every checked
// object is whole.
type VerifyReport struct {
	Store     string           `json:"store"`
	OK        bool             `json:"ok"`
	Backups   []*BackupVerify  `json:"backups"`
	Timelines []TimelineVerify `json:"timelines"`
	// Incomplete lists backup folders without a manifest: interrupted or
	// running backups, or interrupted deletes. They are not backups and
	// not a failure.
	Incomplete []string  `json:"incomplete_backups,omitempty"`
	Problems   []Problem `json:"problems"`
	// general: the problems that belong to no backup and no timeline gap.
	general []Problem
}

func (r *VerifyReport) fail(object, format string, a ...any) {
	p := Problem{Object: object, Problem: fmt.Sprintf(format, a...)}
	r.Problems = append(r.Problems, p)
	r.general = append(r.general, p)
}

// General lists the problems that belong to no backup and are no WAL gap
// (damaged manifests, missing history files, an empty store).
func (r *VerifyReport) General() []Problem { return r.general }

// Verify checks the backups (all, or opts.Backup) and the WAL they need.
// It returns an error only when it could not check (the store failed, an
// encrypted object needs an identity); what it found is in the report.
func Verify(ctx context.Context, cfg *Config, opts VerifyOptions) (*VerifyReport, error) {
	rep := &VerifyReport{Store: cfg.Store.String(), Backups: []*BackupVerify{}, Timelines: []TimelineVerify{}, Problems: []Problem{}}
	selected := func(name string) bool { return opts.Backup == "" || name == opts.Backup }
	// Manifests are read whole, so a damaged file list is found too; a
	// size check then drops the lists to bound memory.
	folders, err := scanBackupFolders(ctx, cfg, selected)
	if err != nil {
		return nil, err
	}
	var backups []*Manifest
	var chosen []*backupFolder
	found := false
	for _, f := range folders {
		if !selected(f.Name) {
			continue
		}
		found = true
		switch {
		case f.Err != nil:
			rep.fail(BackupKey(f.Name, ManifestFile), "%v", trimWhere(f.Err))
		case f.Manifest == nil && opts.Backup != "":
			rep.fail(BackupPrefix+f.Name+"/", "has no %s: the backup is incomplete (interrupted, failed or still running) and cannot be restored", ManifestFile)
		case f.Manifest == nil:
			rep.Incomplete = append(rep.Incomplete, f.Name)
		default:
			f.Manifest.Files = nil // validated; --full reads them again, one backup at a time
			backups = append(backups, f.Manifest)
			chosen = append(chosen, f)
		}
	}
	if opts.Backup != "" && !found {
		return nil, fmt.Errorf("%w: no backup named %q in %s: walvault backup-list shows them", ErrBadInput, opts.Backup, cfg.Store)
	}
	if len(backups) == 0 && opts.Backup == "" {
		rep.fail(BackupPrefix, "no complete backup in the store: nothing can be restored (run walvault backup-push)")
	}
	if opts.Full {
		for _, m := range backups {
			if m.Encrypted && len(cfg.Identities) == 0 {
				return nil, fmt.Errorf("%w: backup %s is encrypted: a full check needs --identity-file (or check sizes only, without --full)", ErrBadInput, m.Name)
			}
		}
	}
	sortBackups(backups)
	byName := map[string]*backupFolder{}
	for _, f := range chosen {
		byName[f.Name] = f
	}
	for _, m := range backups {
		bv := &BackupVerify{Name: m.Name, Timeline: m.Timeline, StartWAL: m.StartWAL, StopWAL: m.StopWAL, StopTime: m.StopTime,
			Permanent: m.Permanent, Checked: "sizes", Parts: len(m.Parts), StoredSize: m.StoredSize, Problems: []Problem{}, Timelines: []TimelineReach{}}
		if opts.Full {
			bv.Checked = "full"
		}
		checkPartSizes(bv, m, byName[m.Name])
		rep.Backups = append(rep.Backups, bv)
	}
	if opts.Full {
		if err := verifyParts(ctx, cfg, backups, rep.Backups, max1(opts.Concurrency)); err != nil {
			return nil, err
		}
	}
	if len(backups) > 0 {
		if err := verifyWAL(ctx, cfg, backups, rep); err != nil {
			return nil, err
		}
	}
	for _, bv := range rep.Backups {
		bv.OK = len(bv.Problems) == 0
		rep.Problems = append(rep.Problems, bv.Problems...)
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// trimWhere drops the error class from a message the report files under
// the object it names.
func trimWhere(err error) string {
	return strings.TrimPrefix(err.Error(), ErrIntegrity.Error()+": ")
}

// checkPartSizes compares the parts listed in the store with the manifest.
func checkPartSizes(bv *BackupVerify, m *Manifest, f *backupFolder) {
	for _, p := range m.Parts {
		key := BackupKey(m.Name, p.Name)
		o, ok := f.Objects[p.Name]
		switch {
		case !ok:
			bv.Problems = append(bv.Problems, Problem{Object: key, Problem: "missing"})
		case o.Size != p.StoredSize:
			bv.Problems = append(bv.Problems, Problem{Object: key, Problem: fmt.Sprintf("is %d bytes, the manifest says %d: the stored part is truncated or altered", o.Size, p.StoredSize)})
		}
	}
}

// maxPartProblems bounds what one damaged part reports.
const maxPartProblems = 20

// verifyParts reads every part of every backup, one backup at a time
// (its file list in memory, not every backup's), concurrency parts at a
// time.
func verifyParts(ctx context.Context, cfg *Config, backups []*Manifest, out []*BackupVerify, concurrency int) error {
	for i, summary := range backups {
		m, err := ReadManifest(ctx, cfg, summary.Name, false)
		if err != nil {
			if errors.Is(err, ErrIntegrity) || errors.Is(err, ErrNotInArchive) {
				out[i].Problems = append(out[i].Problems, Problem{Object: BackupKey(summary.Name, ManifestFile), Problem: trimWhere(err)})
				continue
			}
			return err
		}
		files := map[string]*File{}
		for j := range m.Files {
			files[m.Files[j].Path] = &m.Files[j]
		}
		// Largest first, so one big part does not run alone at the end.
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
				n, probs, err := verifyPart(gctx, cfg, m, idx, files)
				if err != nil {
					return err
				}
				mu.Lock()
				out[i].FilesChecked += n
				out[i].Problems = append(out[i].Problems, probs...)
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		sort.SliceStable(out[i].Problems, func(a, b int) bool { return out[i].Problems[a].Object < out[i].Problems[b].Object })
	}
	return nil
}

// verifyPart streams one part: stored bytes -> SHA-256, decrypt,
// decompress, tar -> CRC-32C of each file, compared with the manifest.
// Memory stays bounded whatever the part's size. It returns the number of
// regular files whose checksum matched.
func verifyPart(ctx context.Context, cfg *Config, m *Manifest, idx int, files map[string]*File) (int, []Problem, error) {
	p := m.Parts[idx]
	key := BackupKey(m.Name, p.Name)
	var probs []Problem
	bad := func(format string, a ...any) {
		if len(probs) < maxPartProblems {
			probs = append(probs, Problem{Object: key, Problem: fmt.Sprintf(format, a...)})
		}
	}
	rc, _, err := cfg.Store.Get(ctx, key)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return 0, nil, nil // reported by the size check
		}
		return 0, nil, asStoreErr(fmt.Errorf("%s: reading %s: %w", cfg.Store, key, err))
	}
	defer rc.Close()
	h := sha256.New()
	body := &transportReader{r: rc} // a network failure is not a damaged object
	raw := &countingReader{r: io.TeeReader(body, h)}
	// A failure of the transport is the store's, not the object's; but
	// the store's own checksum failing on the object is the object's.
	transport := func(err error) error {
		if body.err != nil && ctx.Err() == nil && !storeChecksumFailed(body.err) {
			return asStoreErr(fmt.Errorf("%s: reading %s: %w", cfg.Store, key, body.err))
		}
		if isContextErr(err) || ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	dec, err := codec.NewReader(raw, cfg.Identities)
	if err != nil {
		if e := transport(err); e != nil {
			return 0, nil, e
		}
		if isKeyErr(err) {
			return 0, nil, fmt.Errorf("%s in %s: %w", key, cfg.Store, err)
		}
		bad("does not decode: %v", err)
		return 0, probs, nil
	}
	defer dec.Close()
	seen := map[string]bool{}
	checked := 0
	crcw := &crcWriter{}
	buf := make([]byte, 256<<10)
	tr := tar.NewReader(dec)
	broken := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if e := transport(err); e != nil {
				return 0, nil, e
			}
			bad("does not decode: %v", err)
			broken = true
			break
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		f := files[name]
		switch {
		case f == nil:
			bad("holds %q, which the manifest does not list", name)
			continue
		case f.Part != idx:
			bad("holds %q, which the manifest puts in part %d", name, f.Part)
			continue
		case seen[name]:
			bad("holds %q twice", name)
			continue
		}
		seen[name] = true
		switch {
		case f.Type == TypeDir && hdr.Typeflag == tar.TypeDir:
		case f.Type == TypeSymlink && hdr.Typeflag == tar.TypeSymlink:
			if hdr.Linkname != f.Link {
				bad("symlink %s points to %q, the manifest says %q", name, hdr.Linkname, f.Link)
			}
		case f.Type == TypeFile && hdr.Typeflag == tar.TypeReg:
			crcw.crc = 0
			n, err := io.CopyBuffer(crcw, tr, buf) // #nosec G110 -- bounded by the tar entry's size, which must match the manifest
			if err != nil {
				if e := transport(err); e != nil {
					return 0, nil, e
				}
				bad("does not decode (in %s): %v", name, err)
				broken = true
			} else if n != f.Size || crcHex(crcw.crc) != f.CRC32C || hdr.Size != f.Size {
				bad("file %s fails its checksum (CRC-32C %s over %d bytes, the manifest says %s over %d)", name, crcHex(crcw.crc), n, f.CRC32C, f.Size)
			} else {
				checked++
			}
		default:
			bad("entry %s has tar type %q, the manifest says %q", name, hdr.Typeflag, orNone(f.Type))
		}
		if broken {
			break
		}
	}
	if !broken {
		if _, err := io.CopyBuffer(io.Discard, dec, buf); err != nil {
			if e := transport(err); e != nil {
				return 0, nil, e
			}
			bad("does not decode after its tar end: %v", err)
			broken = true
		}
	}
	if _, err := io.CopyBuffer(io.Discard, raw, buf); err != nil && !storeChecksumFailed(err) {
		return 0, nil, asStoreErr(fmt.Errorf("%s: reading %s: %w", cfg.Store, key, err))
	}
	if body.err != nil && storeChecksumFailed(body.err) {
		bad("the store's own checksum of the object does not match its content: %v", body.err)
		return checked, probs, nil
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != p.SHA256 || raw.n != p.StoredSize {
		bad("SHA-256 %.12s… over %d bytes, the manifest says %.12s… over %d: the stored part is damaged", sum, raw.n, p.SHA256, p.StoredSize)
	}
	if !broken {
		var missing []string
		for path, f := range files {
			if f.Part == idx && !seen[path] {
				missing = append(missing, path)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			bad("lacks %d file(s) the manifest lists in it, e.g. %s", len(missing), missing[0])
		}
	}
	return checked, probs, nil
}

// storeChecksumFailed recognises a backend's own integrity check failing
// on a read (the S3 SDK validates the CRC32 stored with the object, the
// GCS client the object's CRC32C): the object is damaged, the transport is
// fine. The cloud package does not give these a sentinel error yet.
func storeChecksumFailed(err error) bool {
	s := err.Error()
	return strings.Contains(s, "checksum did not match") || strings.Contains(s, "bad CRC on read")
}

type crcWriter struct{ crc uint32 }

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc = crc32.Update(c.crc, castagnoli, p)
	return len(p), nil
}

// verifyWAL checks, for each backup, that its own WAL is archived and how
// far recovery from it gets on every timeline it can follow; then, per
// timeline, lists every gap in the range the backups need. A permanent
// backup needs only its own WAL (retention keeps no more for it).
func verifyWAL(ctx context.Context, cfg *Config, backups []*Manifest, rep *VerifyReport) error {
	segSize, err := segmentSize(backups)
	if err != nil {
		return err
	}
	inv, err := scanWAL(ctx, cfg, segSize, nil)
	if err != nil {
		return err
	}
	for _, tli := range inv.timelines() {
		if e := inv.histErr[tli]; e != nil {
			rep.fail(inv.histKey[tli], "%v", e)
		} else if _, ok := inv.history[tli]; !ok && tli > 1 && len(inv.sorted[tli]) > 0 {
			rep.fail(HistoryPrefix+HistoryName(tli), "missing: timeline %d has WAL in the store but no history file, so recovery cannot follow it", tli)
		}
	}
	// The segments each timeline must hold: spans from the backups' paths
	// (open ones run to the newest archived segment), merged.
	type span struct {
		from, to uint64
		open     bool
	}
	spans := map[uint32][]span{}
	need := func(tli uint32, from, to uint64, isOpen bool) {
		spans[tli] = append(spans[tli], span{from, to, isOpen})
	}
	for i, m := range backups {
		bv := rep.Backups[i]
		start, _ := ParseWALName(m.StartWAL)
		stop, _ := ParseWALName(m.StopWAL)
		own, _ := inv.pathTo(m, m.Timeline, m.Stop())
		w := inv.walk(own)
		bv.Consistent = w.Last != nil && w.LastSegN >= stop.SegNo(segSize)
		if !bv.Consistent {
			bv.Problems = append(bv.Problems, Problem{Object: WALKey(WALFile{Name: w.Missing}),
				Problem: fmt.Sprintf("missing: backup %s cannot be made consistent without it (it needs %s to %s)", m.Name, m.StartWAL, m.StopWAL)})
		}
		if m.Permanent {
			need(m.Timeline, start.SegNo(segSize), stop.SegNo(segSize), false)
		}
		for _, tli := range inv.reachable(m, m.Stop()) {
			path, ok := inv.pathTo(m, tli, m.Stop())
			if !ok {
				continue
			}
			w := inv.walk(path)
			r := TimelineReach{Timeline: tli, RestorableTo: inv.point(w), Gap: w.Gap, Newest: w.Newest}
			bv.Timelines = append(bv.Timelines, r)
			bv.RestorableTo = r.RestorableTo
			if m.Permanent {
				continue
			}
			for _, sr := range path {
				switch {
				case sr.Open:
					need(sr.TLI, sr.First, sr.First, true)
				case sr.End > sr.First:
					need(sr.TLI, sr.First, sr.End-1, false)
				}
			}
		}
	}
	var tls []uint32
	for t := range spans {
		tls = append(tls, t)
	}
	sort.Slice(tls, func(i, j int) bool { return tls[i] < tls[j] })
	for _, t := range tls {
		ss := spans[t]
		for i := range ss {
			if n, ok := inv.newest(t); ok && ss[i].open && n > ss[i].to {
				ss[i].to = n
			}
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].from < ss[j].from })
		var merged []span
		for _, x := range ss {
			if k := len(merged) - 1; k >= 0 && x.from <= merged[k].to+1 {
				merged[k].to = max(merged[k].to, x.to)
				continue
			}
			merged = append(merged, x)
		}
		tv := TimelineVerify{Timeline: t, First: inv.name(t, merged[0].from), Last: inv.name(t, merged[len(merged)-1].to), Gaps: []WALGap{}}
		for _, x := range merged {
			tv.Ranges = append(tv.Ranges, SegmentSpan{First: inv.name(t, x.from), Last: inv.name(t, x.to)})
			gaps := inv.gapsIn(t, x.from, x.to)
			tv.Gaps = append(tv.Gaps, gaps...)
			tv.Segments += x.to - x.from + 1
			for _, g := range gaps {
				tv.Segments -= g.Count
				rep.Problems = append(rep.Problems, Problem{Object: WALKey(WALFile{Name: g.First}), Problem: fmt.Sprintf("missing: WAL %s: recovery along this timeline stops before it", g)})
			}
		}
		rep.Timelines = append(rep.Timelines, tv)
	}
	return nil
}

// tombstoneFile marks a backup folder whose deletion has begun: once the
// manifest is gone, what remains is garbage to finish deleting.
const tombstoneFile = "deleting.json"

// backupFolder is what the store holds under backups/<name>/.
type backupFolder struct {
	Name    string
	Objects map[string]cloud.ObjectInfo // by file name in the folder
	// Manifest is nil when there is none (or it vanished); Err is set when
	// it exists but cannot be read as one.
	Manifest *Manifest
	Err      error
	Newest   time.Time // the newest object's modification time
	Size     int64
}

func (f *backupFolder) has(file string) bool { _, ok := f.Objects[file]; return ok }

// scanBackupFolders lists backups/ once and reads every manifest (whole
// when full says so, else the summary), eight at a time.
func scanBackupFolders(ctx context.Context, cfg *Config, full func(name string) bool) ([]*backupFolder, error) {
	byName := map[string]*backupFolder{}
	err := cfg.Store.List(ctx, BackupPrefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		name, file, ok := strings.Cut(o.Key[len(BackupPrefix):], "/")
		if !ok || name == "" || file == "" {
			return nil
		}
		f := byName[name]
		if f == nil {
			f = &backupFolder{Name: name, Objects: map[string]cloud.ObjectInfo{}}
			byName[name] = f
		}
		f.Objects[file] = o
		f.Size += o.Size
		if o.ModTime.After(f.Newest) {
			f.Newest = o.ModTime
		}
		return nil
	})
	if err != nil {
		return nil, asStoreErr(fmt.Errorf("%s: listing %s: %w", cfg.Store, BackupPrefix, err))
	}
	folders := make([]*backupFolder, 0, len(byName))
	for _, f := range byName {
		folders = append(folders, f)
	}
	sort.Slice(folders, func(i, j int) bool { return folders[i].Name < folders[j].Name })
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, f := range folders {
		if !f.has(ManifestFile) {
			continue
		}
		g.Go(func() error {
			m, err := ReadManifest(gctx, cfg, f.Name, full == nil || !full(f.Name))
			switch {
			case err == nil:
				f.Manifest = m
			case errors.Is(err, ErrNotInArchive):
			case errors.Is(err, ErrIntegrity), errors.Is(err, codec.ErrCorrupt):
				f.Err = err
			default:
				return err
			}
			return nil
		})
	}
	return folders, g.Wait()
}
