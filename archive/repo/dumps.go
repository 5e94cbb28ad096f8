package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// Logical dumps live beside the base backups. A dump is of one of two
// kinds: a database (pg_dump custom format), or a cluster's globals (roles,
// tablespaces: pg_dumpall --globals-only, plain SQL).
//
//	dumps/<name>/dump            the tool's output, compressed and encrypted like a backup part
//	dumps/<name>/manifest.json   written last, signed: the dump exists once it does
const (
	DumpPrefix = "dumps/"
	// DumpFile is the dump object itself.
	DumpFile = "dump"
	// DumpManifestFormat is the version of a dump's manifest.json this
	// build writes; readers refuse newer ones. Format 2 records the sums
	// object that authenticates the dump chunk by chunk (sums.go) and the
	// cluster's system identifier; format 1 dumps are checked whole before
	// use.
	DumpManifestFormat = 2
	// MaxDumpManifestBytes bounds a dump's manifest.json: a dozen short
	// fields.
	MaxDumpManifestBytes = 64 << 10
)

// The kinds of dump, and the dump_format each has.
const (
	DumpKindDatabase = "database" // pg_dump -Fc of one database: dump_format "custom"
	DumpKindGlobals  = "globals"  // pg_dumpall --globals-only: dump_format "plain", no database
)

// DumpKey is the store key of one object of a dump.
func DumpKey(name, file string) string { return DumpPrefix + name + "/" + file }

// DumpManifest describes one logical dump. The dump object is proven
// through it: the manifest is signed and records the stored object's
// SHA-256 and size.
type DumpManifest struct {
	Format        int       `json:"format"`
	Name          string    `json:"name"`
	Kind          string    `json:"kind"` // DumpKindDatabase or DumpKindGlobals
	Software      string    `json:"software,omitempty"`
	Hostname      string    `json:"hostname,omitempty"`
	Database      string    `json:"database"`   // "" for globals
	PGVersion     int       `json:"pg_version"` // server_version_num
	PGVersionText string    `json:"pg_version_string,omitempty"`
	PGDumpVersion string    `json:"pg_dump_version"` // pg_dump --version (pg_dumpall --version for globals)
	DumpFormat    string    `json:"dump_format"`     // "custom" for a database, "plain" for globals
	StartTime     time.Time `json:"start_time"`
	StopTime      time.Time `json:"stop_time"`
	Size          int64     `json:"size"`        // plain bytes of pg_dump's output
	StoredSize    int64     `json:"stored_size"` // bytes of the stored object
	SHA256        string    `json:"sha256"`      // of the stored object
	Compression   string    `json:"compression"`
	Encrypted     bool      `json:"encrypted"`
	// Sums is the SHA-256 of the dump's sums object; SystemIdentifier the
	// dumped cluster's (format 2).
	Sums             string `json:"sums_sha256,omitempty"`
	SystemIdentifier string `json:"system_identifier,omitempty"`
}

// Validate checks a dump manifest as a reader would: everything in it
// came from the store, so every string is bounded and free of control
// characters, and the name is one walvault gives.
func (m *DumpManifest) Validate() error {
	if m.Format < 1 || m.Format > DumpManifestFormat {
		return fmt.Errorf("dump manifest format %d is not supported by this walvault (it reads up to %d): upgrade walvault", m.Format, DumpManifestFormat)
	}
	if !ValidBackupName(m.Name) {
		return fmt.Errorf("bad dump name %s", short(m.Name))
	}
	switch m.Kind {
	case DumpKindDatabase:
		if m.Database == "" {
			return errors.New("no database name")
		}
		if m.DumpFormat != "custom" {
			return fmt.Errorf("dump_format %s for a database dump (want custom)", short(m.DumpFormat))
		}
	case DumpKindGlobals:
		if m.Database != "" {
			return errors.New("a globals dump names a database")
		}
		if m.DumpFormat != "plain" {
			return fmt.Errorf("dump_format %s for a globals dump (want plain)", short(m.DumpFormat))
		}
	default:
		return fmt.Errorf("unknown kind %s", short(m.Kind))
	}
	for _, f := range []struct {
		field, s string
		max      int
	}{
		{"software", m.Software, maxTextLen},
		{"hostname", m.Hostname, maxHostnameLen},
		{"database", m.Database, maxNameLen},
		{"pg_version_string", m.PGVersionText, maxTextLen},
		{"pg_dump_version", m.PGDumpVersion, maxTextLen},
		{"dump_format", m.DumpFormat, maxNameLen},
	} {
		if err := checkText(f.field, f.s, f.max, false); err != nil {
			return err
		}
	}
	switch m.Compression {
	case "lz4", "zstd", "none":
	default:
		return fmt.Errorf("unknown compression %s", short(m.Compression))
	}
	if m.Size < 0 || m.StoredSize <= 0 {
		return fmt.Errorf("bad sizes: %d plain, %d stored", m.Size, m.StoredSize)
	}
	if b, err := hex.DecodeString(m.SHA256); err != nil || len(b) != 32 {
		return errors.New("no valid sha256")
	}
	if m.StopTime.Before(m.StartTime) {
		return errors.New("stop_time is before start_time")
	}
	if m.Format >= 2 && (!isHex(m.Sums, 64) || !digits(m.SystemIdentifier, 20)) {
		return errors.New("no valid sums_sha256 or system_identifier")
	}
	if m.Format < 2 && (m.Sums != "" || m.SystemIdentifier != "") {
		return errors.New("sums_sha256 or system_identifier in a format 1 manifest")
	}
	return nil
}

// DumpName is the name of a dump of kind started at t: dump_<UTC
// start>_<database>, with characters other than A-Za-z0-9._- as '_' (at
// most 64 of them; "db" for an empty name), or for the globals
// dumpall_<UTC start>_globals (a prefix no database dump has, so a
// database called "globals" cannot collide).
func DumpName(t time.Time, kind, database string) string {
	stamp := t.UTC().Format("20060102T150405Z")
	if kind == DumpKindGlobals {
		return "dumpall_" + stamp + "_globals"
	}
	var b strings.Builder
	for _, c := range []byte(database) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			c = '_'
		}
		b.WriteByte(c)
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 {
		b.WriteString("db")
	}
	return "dump_" + stamp + "_" + b.String()
}

// DecodeDumpManifest parses and validates a dump manifest (the caller
// bounds the reader).
func DecodeDumpManifest(rd io.Reader) (*DumpManifest, error) {
	body, err := io.ReadAll(io.LimitReader(rd, MaxDumpManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxDumpManifestBytes {
		return nil, fmt.Errorf("longer than %d bytes", MaxDumpManifestBytes)
	}
	var m DumpManifest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return &m, m.Validate()
}

// ReadDumpManifest fetches, authenticates and parses the manifest of dump
// name. A dump without one does not exist: ErrNotInArchive.
func (r *Repo) ReadDumpManifest(ctx context.Context, name string) (*DumpManifest, error) {
	if !ValidBackupName(name) {
		return nil, fmt.Errorf("%w: %s is not a dump name walvault writes", archive.ErrBadInput, short(name))
	}
	key := DumpKey(name, ManifestFile)
	var m *DumpManifest
	err := r.Load(ctx, key, Want{Proof: true, MaxSize: MaxDumpManifestBytes}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		var err error
		if m, err = DecodeDumpManifest(rd); err != nil && !archive.IsContextErr(err) && !errors.Is(err, archive.ErrStore) && !errors.Is(err, archive.ErrIntegrity) {
			return fmt.Errorf("%w: %s in %s is not a valid dump manifest: %v", archive.ErrIntegrity, key, r.Store, err)
		}
		return err
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, fmt.Errorf("dump %s: %w", name, archive.ErrNotInArchive)
	}
	if err != nil {
		return nil, err
	}
	if m.Name != name {
		return nil, fmt.Errorf("%w: %s in %s names dump %s", archive.ErrIntegrity, key, r.Store, short(m.Name))
	}
	if r.Cluster != "" && m.SystemIdentifier != "" && m.SystemIdentifier != r.Cluster {
		return nil, fmt.Errorf("%w: %s in %s is a dump of the cluster with system identifier %s, and this archive belongs to %s (cluster.json): a dump copied from another cluster's archive", archive.ErrIntegrity, key, r.Store, m.SystemIdentifier, r.Cluster)
	}
	return m, nil
}

// WriteDumpManifest stores m's manifest, signed and write-once: the dump
// comes into existence.
func (r *Repo) WriteDumpManifest(ctx context.Context, m *DumpManifest) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: the manifest of dump %s would not read back: %w", archive.ErrBadInput, m.Name, err)
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	body = append(body, '\n')
	key := DumpKey(m.Name, ManifestFile)
	sum := sha256.Sum256(body)
	meta := contentMeta(hex.EncodeToString(sum[:]), int64(len(body)))
	if err := r.PutBytes(ctx, key, body, cloud.PutOptions{IfAbsent: true, Metadata: meta}); err != nil {
		return fmt.Errorf("%s: writing %s: %w", r.Store, key, err)
	}
	return nil
}

// DumpFolder is what the store holds under dumps/<name>/.
type DumpFolder struct {
	Folder
	// Manifest is nil when there is none (an interrupted dump) or it
	// cannot be trusted; Err says why in the second case.
	Manifest *DumpManifest
	Err      error
	hasMan   bool
}

// Complete says whether the folder holds a manifest (trusted or not).
func (f *DumpFolder) Complete() bool { return f.hasMan }

// ListDumps lists dumps/ and reads every manifest (eight at a time).
// Folders are sorted by name; a folder whose manifest is damaged or fails
// authentication has Err set. A name walvault would not give is data,
// never read further.
func (r *Repo) ListDumps(ctx context.Context) ([]*DumpFolder, error) {
	if err := r.BindCluster(ctx); err != nil {
		return nil, err
	}
	listed, err := ListFolders(ctx, r.Store, DumpPrefix)
	if err != nil {
		return nil, err
	}
	folders := make([]*DumpFolder, 0, len(listed))
	var withManifest []*DumpFolder
	for _, l := range listed {
		f := &DumpFolder{Folder: *l, hasMan: l.Has(ManifestFile)}
		folders = append(folders, f)
		switch {
		case !ValidBackupName(f.Name):
			f.Err = fmt.Errorf("%w: %q under %s is not a dump name walvault writes", archive.ErrIntegrity, f.Name, DumpPrefix)
			f.hasMan = true
		case f.hasMan:
			withManifest = append(withManifest, f)
		}
	}
	err = eachFolder(ctx, withManifest, func(ctx context.Context, f *DumpFolder) error {
		m, err := r.ReadDumpManifest(ctx, f.Name)
		switch {
		case err == nil:
			f.Manifest = m
		case errors.Is(err, archive.ErrNotInArchive):
			f.hasMan = false // deleted since the listing
		case errors.Is(err, archive.ErrStore), archive.IsContextErr(err):
			return err
		default:
			f.Err = err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return folders, nil
}

// CompleteDumps is every dump with a trusted manifest, oldest first by
// finish time.
func CompleteDumps(folders []*DumpFolder) []*DumpManifest {
	var out []*DumpManifest
	for _, f := range folders {
		if f.Manifest != nil {
			out = append(out, f.Manifest)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].StopTime.Equal(out[j].StopTime) {
			return out[i].StopTime.Before(out[j].StopTime)
		}
		return out[i].Name < out[j].Name
	})
	return out
}
