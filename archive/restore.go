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
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// RestoreOptions tune restore.
type RestoreOptions struct {
	Dest string
	// Backup is a backup name, or "" / "LATEST" to pick by the target.
	Backup string
	Target Target
	// Standby writes standby.signal (a replica following the archive)
	// instead of recovery.signal.
	Standby bool
	// TablespaceMap moves tablespaces: OID or name -> directory.
	TablespaceMap map[string]string
	Concurrency   int
	// Force allows a non-empty DEST (and tablespace directories): files of
	// the backup overwrite what is there; nothing else is deleted.
	Force bool
	// FetchArgv is restore_command without %f %p: this binary, "wal-fetch"
	// and the settings that reach the same store and key.
	FetchArgv        []string
	Bar              io.Writer
	ProgressInterval time.Duration
}

// RestoreResult says what restore did.
type RestoreResult struct {
	Manifest    *Manifest
	Dest        string
	Tablespaces []Tablespace // where they were restored
	Settings    recoverySettings
	Bytes       int64
	Duration    time.Duration
}

// SettingsFile is where the recovery settings went.
func (r *RestoreResult) SettingsFile() string { return r.Settings.File }

// SignalFile is the signal file written, if any.
func (r *RestoreResult) SignalFile() string { return r.Settings.Signal }

// SettingLines are the recovery settings written.
func (r *RestoreResult) SettingLines() []string { return r.Settings.Lines }

// controlTemp is where global/pg_control waits until everything else is
// restored and verified: without pg_control a half-restored directory
// cannot be started by mistake.
const controlTemp = "global/pg_control.walvault-restore"

// Restore restores a base backup into opts.Dest and writes the recovery
// settings. Bad input (a non-empty DEST, no fitting backup, a key that
// cannot decrypt) is reported before anything is written. A part or file
// that fails its checksum stops the restore with ErrIntegrity naming it;
// DEST then has no global/pg_control and cannot be started.
func Restore(ctx context.Context, cfg *Config, opts RestoreOptions) (*RestoreResult, error) {
	began := time.Now()
	if err := opts.Target.Validate(); err != nil {
		return nil, err
	}
	dest, err := filepath.Abs(opts.Dest)
	if err != nil {
		return nil, err
	}
	if err := checkEmptyDir(dest, "DEST", opts.Force, "restore into an empty or new directory, or pass --force to write over it (files of the backup are overwritten, nothing else is removed)"); err != nil {
		return nil, err
	}
	m, err := chooseBackup(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	if m, err = ReadManifest(ctx, cfg, m.Name, false); err != nil {
		return nil, err
	}
	// The WAL from the backup's start to its stop must be there, or the
	// restored server can never become consistent.
	if r, err := WALRanges(ctx, cfg.Store, []*Manifest{m}); err != nil {
		return nil, err
	} else if !r[m.Name].Restorable {
		return nil, fmt.Errorf("%w: backup %s cannot be made consistent: its WAL %s to %s is not all in %s (have: %s to %s)",
			ErrIntegrity, m.Name, m.StartWAL, m.StopWAL, cfg.Store, orNone(r[m.Name].First), orNone(r[m.Name].Last))
	}
	if m.Encrypted && len(cfg.Identities) == 0 {
		return nil, fmt.Errorf("%w: backup %s is encrypted: give the identity file with --identity-file", ErrBadInput, m.Name)
	}
	if err := CheckWALReachable(ctx, cfg, m, opts.Target); err != nil {
		return nil, err
	}
	spcs, err := mapTablespaces(m, opts.TablespaceMap, dest, opts.Force)
	if err != nil {
		return nil, err
	}
	if err := preflightDecrypt(ctx, cfg, m); err != nil {
		return nil, err
	}
	settings := renderRecovery(m.PGVersion, opts.FetchArgv, opts.Target, opts.Standby)

	// From here on we write.
	x := &extractor{cfg: cfg, m: m, force: opts.Force, roots: map[uint32]*os.Root{}, expect: map[string]*File{}}
	defer x.closeRoots()
	if err := x.openRoots(dest, spcs); err != nil {
		return nil, err
	}
	for i := range m.Files {
		x.expect[m.Files[i].Path] = &m.Files[i]
	}
	x.prog = newProgress("restore", m.DataSize, opts.Bar, opts.ProgressInterval)
	err = x.extractAll(ctx, max1(opts.Concurrency))
	x.prog.done()
	if err != nil {
		return nil, err
	}
	if err := x.finish(spcs); err != nil {
		return nil, err
	}
	if err := writeRecovery(x.roots[0], settings, m); err != nil {
		return nil, err
	}
	if err := x.roots[0].Rename(controlTemp, "global/pg_control"); err != nil {
		return nil, fmt.Errorf("putting global/pg_control in place: %w", err)
	}
	if err := syncDir(filepath.Join(dest, "global")); err != nil {
		return nil, err
	}
	if err := syncDir(dest); err != nil {
		return nil, err
	}
	return &RestoreResult{Manifest: m, Dest: dest, Tablespaces: spcs, Settings: settings, Bytes: m.DataSize, Duration: time.Since(began)}, nil
}

// checkEmptyDir refuses a directory with anything in it, unless force;
// a running server's directory is refused even then.
func checkEmptyDir(dir, what string, force bool, hint string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrBadInput, what, dir, err)
	}
	if len(ents) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); err == nil {
		return fmt.Errorf("%w: %s %s has a postmaster.pid: a server may be running there; stop it and move the directory away", ErrBadInput, what, dir)
	}
	if !force {
		return fmt.Errorf("%w: %s %s is not empty (%s, ...): %s", ErrBadInput, what, dir, ents[0].Name(), hint)
	}
	slog.Warn("restoring into a non-empty directory (--force): files not in the backup are left as they are", "dir", dir)
	return nil
}

// chooseBackup lists the backups and picks one for the target.
func chooseBackup(ctx context.Context, cfg *Config, opts RestoreOptions) (*Manifest, error) {
	backups, err := ListBackups(ctx, cfg)
	if err != nil {
		return nil, err
	}
	t := opts.Target
	sel := Selection{Backup: opts.Backup, Time: t.Time, LSN: t.LSN}
	if t.XID != "" {
		sel.XID, _ = strconv.ParseUint(t.XID, 10, 64)
	}
	switch t.Timeline {
	case "current":
	case "latest", "":
		if sel.TargetTLI, err = latestTimeline(ctx, cfg.Store); err != nil {
			return nil, err
		}
	default:
		v, _ := strconv.ParseUint(t.Timeline, 10, 32)
		sel.TargetTLI = uint32(v)
	}
	if sel.TargetTLI > 1 {
		if sel.History, err = readHistory(ctx, cfg, sel.TargetTLI); err != nil {
			return nil, err
		}
	} else if t.Timeline == "latest" {
		sel.TargetTLI = 0 // one timeline only: any backup is on it
	}
	return selectBackup(backups, sel)
}

// mapTablespaces decides where each tablespace goes: --tablespace-map by
// OID or name, else its original location.
func mapTablespaces(m *Manifest, tmap map[string]string, dest string, force bool) ([]Tablespace, error) {
	for k := range tmap {
		known := false
		var names []string
		for _, ts := range m.Tablespaces {
			known = known || k == ts.Name || k == strconv.FormatUint(uint64(ts.OID), 10)
			names = append(names, tsLabel(ts))
		}
		if !known {
			return nil, fmt.Errorf("%w: --tablespace-map %s: backup %s has no such tablespace (it has: %s)", ErrBadInput, k, m.Name, orNone(strings.Join(names, ", ")))
		}
	}
	var out []Tablespace
	for _, ts := range m.Tablespaces {
		loc := ts.Location
		for _, k := range []string{strconv.FormatUint(uint64(ts.OID), 10), ts.Name} {
			if d, ok := tmap[k]; ok && k != "" {
				loc = d
			}
		}
		abs, err := filepath.Abs(loc)
		if err != nil {
			return nil, err
		}
		if abs == dest || strings.HasPrefix(dest+"/", abs+"/") {
			return nil, fmt.Errorf("%w: tablespace %s would be restored at %s, which contains DEST", ErrBadInput, tsLabel(ts), abs)
		}
		key := ts.Name
		if key == "" {
			key = strconv.FormatUint(uint64(ts.OID), 10)
		}
		hint := fmt.Sprintf("restore it elsewhere with --tablespace-map %s=DIR, or pass --force to write over it (files of the backup are overwritten, nothing else is removed)", key)
		if err := checkEmptyDir(abs, "tablespace "+tsLabel(ts)+" directory", force, hint); err != nil {
			return nil, err
		}
		ts.Location = abs
		out = append(out, ts)
	}
	return out, nil
}

func tsLabel(ts Tablespace) string {
	if ts.Name != "" {
		return fmt.Sprintf("%s (OID %d)", ts.Name, ts.OID)
	}
	return fmt.Sprintf("OID %d", ts.OID)
}

// preflightDecrypt opens the smallest part, so a missing or wrong key is
// reported before anything is written.
func preflightDecrypt(ctx context.Context, cfg *Config, m *Manifest) error {
	small := 0
	for i, p := range m.Parts {
		if p.StoredSize < m.Parts[small].StoredSize {
			small = i
		}
	}
	key := BackupKey(m.Name, m.Parts[small].Name)
	rc, _, err := cfg.Store.Get(ctx, key)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return fmt.Errorf("%w: %s in %s is missing: backup %s cannot be restored", ErrIntegrity, key, cfg.Store, m.Name)
		}
		return asStoreErr(fmt.Errorf("%s: reading %s: %w", cfg.Store, key, err))
	}
	defer rc.Close()
	dec, err := codec.NewReader(rc, cfg.Identities)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", key, cfg.Store, err)
	}
	return dec.Close()
}

// extractor writes the parts of one backup.
type extractor struct {
	cfg   *Config
	m     *Manifest
	force bool
	roots map[uint32]*os.Root // 0: DEST; else a tablespace's directory
	prog  *progress

	mu     sync.Mutex
	expect map[string]*File
	seen   map[string]bool
	dirs   sync.Map // "oid/dir" already created
}

func (x *extractor) openRoots(dest string, spcs []Tablespace) error {
	open := func(oid uint32, dir string) error {
		// Parents as a packaged PostgreSQL has them (traversable), the
		// directory itself private.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { // #nosec G301 -- the parent of a tablespace directory: other users may need to traverse it, as for any directory above PGDATA
			return err
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Chmod(dir, 0o700); err != nil { // #nosec G302 -- a directory, 0700 as PostgreSQL requires
			return err
		}
		r, err := os.OpenRoot(dir)
		if err != nil {
			return err
		}
		x.roots[oid] = r
		return nil
	}
	if err := open(0, dest); err != nil {
		return fmt.Errorf("creating DEST %s: %w", dest, err)
	}
	for _, ts := range spcs {
		if err := open(ts.OID, ts.Location); err != nil {
			return fmt.Errorf("creating tablespace directory %s: %w", ts.Location, err)
		}
	}
	return nil
}

func (x *extractor) closeRoots() {
	for _, r := range x.roots {
		_ = r.Close()
	}
}

// extractAll downloads and extracts the parts, largest first, concurrency
// at a time; every written file is fsynced by a small pool while the next
// one is written.
func (x *extractor) extractAll(ctx context.Context, concurrency int) error {
	x.seen = map[string]bool{}
	order := make([]int, len(x.m.Parts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return x.m.Parts[order[a]].Size > x.m.Parts[order[b]].Size })

	syncq := make(chan *os.File, 64)
	var syncErr error
	var syncMu sync.Mutex
	var swg sync.WaitGroup
	for range concurrency {
		swg.Add(1)
		go func() {
			defer swg.Done()
			for f := range syncq {
				err := f.Sync()
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					syncMu.Lock()
					if syncErr == nil {
						syncErr = fmt.Errorf("flushing %s: %w", f.Name(), err)
					}
					syncMu.Unlock()
				}
			}
		}()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, i := range order {
		g.Go(func() error {
			buf := make([]byte, copyBufSize)
			return x.extractPart(gctx, i, buf, syncq)
		})
	}
	err := g.Wait()
	close(syncq)
	swg.Wait()
	if err != nil {
		return err
	}
	if syncErr != nil {
		return syncErr
	}
	var missing []string
	for _, f := range x.m.Files {
		if !x.seen[f.Path] {
			missing = append(missing, f.Path)
		}
	}
	if len(missing) > 0 {
		f := x.expect[missing[0]]
		return fmt.Errorf("%w: %s (and %d more) listed in the manifest of %s is not in %s", ErrIntegrity, missing[0], len(missing)-1, x.m.Name, BackupKey(x.m.Name, x.m.Parts[f.Part].Name))
	}
	return nil
}

// extractPart streams one part from the store into place, checking every
// file against the manifest and the stored object against its SHA-256.
func (x *extractor) extractPart(ctx context.Context, idx int, buf []byte, syncq chan<- *os.File) error {
	p := x.m.Parts[idx]
	key := BackupKey(x.m.Name, p.Name)
	where := fmt.Sprintf("%s in %s", key, x.cfg.Store)
	rc, _, err := x.cfg.Store.Get(ctx, key)
	if err != nil {
		if errors.Is(err, cloud.ErrNotFound) {
			return fmt.Errorf("%w: %s is missing", ErrIntegrity, where)
		}
		return asStoreErr(fmt.Errorf("%s: reading %s: %w", x.cfg.Store, key, err))
	}
	defer rc.Close()
	h := sha256.New()
	raw := &countingReader{r: io.TeeReader(rc, h)}
	dec, err := codec.NewReader(raw, x.cfg.Identities)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	defer dec.Close()
	corrupt := func(err error) error {
		if isContextErr(err) || errors.Is(err, ErrIntegrity) {
			return err
		}
		if errors.Is(err, codec.ErrCorrupt) || errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %s does not decode: %w", ErrIntegrity, where, err)
		}
		return err
	}
	root := x.roots[p.Tablespace]
	if root == nil {
		return fmt.Errorf("%w: %s belongs to tablespace %d, which the manifest does not list", ErrIntegrity, where, p.Tablespace)
	}
	prefix := ""
	if p.Tablespace != 0 {
		prefix = fmt.Sprintf("pg_tblspc/%d/", p.Tablespace)
	}
	tr := tar.NewReader(dec)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return corrupt(err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		f, err := x.claim(name, idx)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrIntegrity, where, err)
		}
		rel, ok := strings.CutPrefix(name, prefix)
		if !ok || !safeRelPath(rel) {
			return fmt.Errorf("%w: %s: entry %q is outside its tablespace", ErrIntegrity, where, name)
		}
		switch {
		case f.Type == TypeDir && hdr.Typeflag == tar.TypeDir:
			if err := x.mkdirAll(p.Tablespace, root, rel); err != nil {
				return err
			}
		case f.Type == TypeSymlink && hdr.Typeflag == tar.TypeSymlink:
			// Created in finish, once no file is written through a path.
		case f.Type == TypeFile && hdr.Typeflag == tar.TypeReg:
			if p.Tablespace == 0 && rel == "global/pg_control" {
				rel = controlTemp
			}
			if err := x.writeFile(p.Tablespace, root, rel, f, hdr, tr, buf, syncq); err != nil {
				if errors.Is(err, ErrIntegrity) {
					return fmt.Errorf("%s: %w", where, err)
				}
				return corrupt(err)
			}
		default:
			return fmt.Errorf("%w: %s: entry %q has type %q, the manifest says %q", ErrIntegrity, where, name, hdr.Typeflag, f.Type)
		}
	}
	// Read to the very end so the hash covers the whole stored object.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return corrupt(err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return asStoreErr(fmt.Errorf("%s: reading %s: %w", x.cfg.Store, key, err))
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != p.SHA256 || raw.n != p.StoredSize {
		return fmt.Errorf("%w: %s: SHA-256 %.12s… over %d bytes, the manifest says %.12s… over %d: the stored part is damaged", ErrIntegrity, where, sum, raw.n, p.SHA256, p.StoredSize)
	}
	return nil
}

// claim marks a tar entry as seen and returns its manifest record.
func (x *extractor) claim(name string, part int) (*File, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	f := x.expect[name]
	if f == nil || f.Part != part {
		return nil, fmt.Errorf("entry %q is not in the manifest for this part", name)
	}
	if x.seen[name] {
		return nil, fmt.Errorf("entry %q appears twice", name)
	}
	x.seen[name] = true
	return f, nil
}

func (x *extractor) mkdirAll(oid uint32, root *os.Root, rel string) error {
	k := strconv.FormatUint(uint64(oid), 10) + ":" + rel
	if _, ok := x.dirs.Load(k); ok {
		return nil
	}
	if err := root.MkdirAll(rel, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Join(root.Name(), rel), err)
	}
	x.dirs.Store(k, true)
	return nil
}

func (x *extractor) writeFile(oid uint32, root *os.Root, rel string, f *File, hdr *tar.Header, r io.Reader, buf []byte, syncq chan<- *os.File) error {
	if hdr.Size != f.Size {
		return fmt.Errorf("%w: %s is %d bytes in the part, %d in the manifest", ErrIntegrity, f.Path, hdr.Size, f.Size)
	}
	if dir := path.Dir(rel); dir != "." {
		if err := x.mkdirAll(oid, root, dir); err != nil {
			return err
		}
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if x.force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	perm := fs.FileMode(f.Perm())
	out, err := root.OpenFile(rel, flags, perm)
	if err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Join(root.Name(), rel), err)
	}
	var crc uint32
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			crc = crc32.Update(crc, castagnoli, buf[:k])
			if _, err := out.Write(buf[:k]); err != nil {
				_ = out.Close()
				return fmt.Errorf("writing %s: %w", out.Name(), err)
			}
			n += int64(k)
			x.prog.addRead(int64(k))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = out.Close()
			return rerr
		}
	}
	if n != f.Size || crcHex(crc) != f.CRC32C {
		_ = out.Close()
		return fmt.Errorf("%w: %s fails its checksum (CRC-32C %s over %d bytes, the manifest says %s over %d)", ErrIntegrity, f.Path, crcHex(crc), n, f.CRC32C, f.Size)
	}
	if perm&0o077 != 0 || x.force {
		if err := out.Chmod(perm); err != nil { // umask or an old file may differ
			_ = out.Close()
			return err
		}
	}
	if err := root.Chtimes(rel, f.MTime, f.MTime); err != nil {
		_ = out.Close()
		return err
	}
	syncq <- out
	return nil
}

// finish creates symlinks and tablespace links, applies directory modes,
// hands everything to the data directory's owner when run as root, and
// flushes the directories.
func (x *extractor) finish(spcs []Tablespace) error {
	dest := x.roots[0]
	if err := dest.MkdirAll("pg_tblspc", 0o700); err != nil {
		return err
	}
	for _, ts := range spcs {
		link := fmt.Sprintf("pg_tblspc/%d", ts.OID)
		if x.force {
			_ = dest.Remove(link)
		}
		if err := dest.Symlink(ts.Location, link); err != nil {
			return fmt.Errorf("linking tablespace %s: %w", tsLabel(ts), err)
		}
	}
	var dirs []string
	for _, f := range x.m.Files {
		root, rel := x.locate(f)
		switch f.Type {
		case TypeSymlink:
			if x.force {
				_ = root.Remove(rel)
			}
			if err := root.Symlink(f.Link, rel); err != nil {
				return fmt.Errorf("creating symlink %s: %w", f.Path, err)
			}
		case TypeDir:
			if perm := fs.FileMode(f.Perm()); perm != 0o700 {
				if err := root.Chmod(rel, perm); err != nil {
					return err
				}
			}
			dirs = append(dirs, filepath.Join(root.Name(), rel))
		}
	}
	if os.Geteuid() == 0 {
		if err := x.chownAll(spcs); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return fmt.Errorf("flushing %s: %w", d, err)
		}
	}
	for _, ts := range spcs {
		if err := syncDir(ts.Location); err != nil {
			return err
		}
	}
	return nil
}

// locate maps a manifest path to its root and path there.
func (x *extractor) locate(f File) (*os.Root, string) {
	p := x.m.Parts[f.Part]
	if p.Tablespace != 0 {
		return x.roots[p.Tablespace], strings.TrimPrefix(f.Path, fmt.Sprintf("pg_tblspc/%d/", p.Tablespace))
	}
	if f.Path == "global/pg_control" {
		return x.roots[0], controlTemp
	}
	return x.roots[0], f.Path
}

// chownAll gives the restored tree to the backup's owner, found by name
// (uids differ between machines), else by the recorded uid.
func (x *extractor) chownAll(spcs []Tablespace) error {
	o := x.m.Owner
	uid, gid := o.UID, o.GID
	if u, err := user.Lookup(o.User); o.User != "" && err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	} else if o.User != "" {
		slog.Warn("the data directory's owner does not exist here; using the recorded uid", "user", o.User, "uid", uid)
	}
	if g, err := user.LookupGroup(o.Group); o.Group != "" && err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	if uid == 0 {
		return nil
	}
	for _, r := range x.roots {
		if err := os.Lchown(r.Name(), uid, gid); err != nil {
			return err
		}
	}
	for _, ts := range spcs {
		_ = x.roots[0].Lchown(fmt.Sprintf("pg_tblspc/%d", ts.OID), uid, gid)
	}
	_ = x.roots[0].Lchown("pg_tblspc", uid, gid)
	for _, f := range x.m.Files {
		root, rel := x.locate(f)
		if err := root.Lchown(rel, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", f.Path, err)
		}
	}
	return nil
}

// writeRecovery writes the signal file and appends the recovery settings.
func writeRecovery(root *os.Root, s recoverySettings, m *Manifest) error {
	o := m.Owner
	if err := disableOldRecovery(root, s.File); err != nil {
		return err
	}
	text := fmt.Sprintf("\n# Added by walvault restore of backup %s at %s.\n%s\n",
		m.Name, time.Now().UTC().Format(time.RFC3339), strings.Join(s.Lines, "\n"))
	f, err := root.OpenFile(s.File, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.File, err)
	}
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	files := []string{s.File}
	if s.Signal != "" {
		if err := root.WriteFile(s.Signal, nil, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", s.Signal, err)
		}
		files = append(files, s.Signal)
	}
	if os.Geteuid() == 0 {
		uid, gid := o.UID, o.GID
		if u, err := user.Lookup(o.User); o.User != "" && err == nil {
			uid, _ = strconv.Atoi(u.Uid)
			gid, _ = strconv.Atoi(u.Gid)
		}
		for _, n := range files {
			_ = root.Lchown(n, uid, gid)
		}
	}
	return nil
}

// disableOldRecovery comments out the recovery settings an earlier restore
// left in the settings file: a backup taken from a restored server carries
// them in postgresql.auto.conf, and a stale recovery_target_time would stop
// this recovery short of what it was asked for.
func disableOldRecovery(root *os.Root, file string) error {
	b, err := root.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	lines := strings.Split(string(b), "\n")
	changed := false
	for i, l := range lines {
		k, _, ok := strings.Cut(strings.TrimSpace(l), "=")
		k = strings.TrimSpace(k)
		if ok && (k == "restore_command" || k == "standby_mode" || strings.HasPrefix(k, "recovery_target")) {
			lines[i] = "# disabled by walvault restore: " + l
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return root.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600)
}
