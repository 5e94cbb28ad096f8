package repo

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/walvault/walvault/archive"
)

// Manifest formats. A reader refuses newer formats rather than misread
// them. Full backups are still written as format 1, so that walvault
// builds from before incremental backups keep reading them; incremental
// backups are format 2, which those builds refuse instead of restoring
// files whose blocks are elsewhere.
//
// Format 3 is what this build writes for every backup: each part is
// authenticated chunk by chunk through a sums object (Part.Sums), and the
// permanent flag is superseded by signed mark records (marks.go). Builds
// that do not know either refuse it, rather than restore with weaker
// checks or delete a backup a mark record keeps.
const (
	ManifestFormat            = 3 // the newest this build reads, and what it writes
	ManifestFormatFull        = 1
	ManifestFormatIncremental = 2
	ManifestFormatSums        = 3
)

// Backup types, the manifest's "type". An empty type (manifests written
// before incremental backups) is a full backup.
const (
	BackupFull        = "full"
	BackupIncremental = "incremental"
)

// MaxChain bounds how many ancestors an incremental backup may have.
const MaxChain = 64

// Manifest describes one base backup. Field order matters: Files comes
// last so that listing can stop reading a manifest before the file list.
type Manifest struct {
	Format   int    `json:"format"`
	Name     string `json:"name"`
	Software string `json:"software,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// FromStandby: the backup was taken on a standby (its data directory,
	// its backup API); its WAL came from wherever the cluster archives.
	FromStandby      bool              `json:"from_standby,omitempty"`
	PGVersion        int               `json:"pg_version"` // server_version_num, e.g. 150004
	PGVersionString  string            `json:"pg_version_string,omitempty"`
	SystemIdentifier string            `json:"system_identifier"`
	Timeline         uint32            `json:"timeline"`
	StartLSN         archive.LSN       `json:"start_lsn"`
	StopLSN          archive.LSN       `json:"stop_lsn"`
	StartWAL         string            `json:"start_wal"`
	StopWAL          string            `json:"stop_wal"`
	StartTime        time.Time         `json:"start_time"`
	StopTime         time.Time         `json:"stop_time"`
	SegmentSize      int64             `json:"wal_segment_size"`
	StopNextXID      uint64            `json:"stop_next_xid,omitempty"`
	DataSize         int64             `json:"data_size"`   // bytes of the files, as read
	StoredSize       int64             `json:"stored_size"` // bytes in the store, all parts
	Compression      string            `json:"compression"`
	Encrypted        bool              `json:"encrypted"`
	Permanent        bool              `json:"permanent,omitempty"`
	Annotations      map[string]string `json:"annotations,omitempty"`
	PGData           string            `json:"pgdata"`
	Owner            FileOwner         `json:"owner"`
	Tablespaces      []Tablespace      `json:"tablespaces,omitempty"`
	// Databases names the databases by OID (their directories in base/
	// and the tablespaces), for backup-info; written since backup-info.
	Databases     []Database `json:"databases,omitempty"`
	BackupLabel   string     `json:"backup_label"`
	TablespaceMap string     `json:"tablespace_map,omitempty"`
	// Type is BackupFull or BackupIncremental ("" is full).
	Type string `json:"type,omitempty"`
	// Parent is the backup an incremental builds on, and
	// ParentManifestSHA256 the SHA-256 of that backup's manifest.json as
	// read when this one was taken: a restore refuses a parent that is not
	// the one this backup was made against.
	Parent               string `json:"parent,omitempty"`
	ParentManifestSHA256 string `json:"parent_manifest_sha256,omitempty"`
	// Chain lists the ancestors of an incremental: its parent first, the
	// full backup last.
	Chain []string `json:"chain,omitempty"`
	// BlockSize is the server's block size (BLCKSZ), the unit of the
	// block maps of an incremental's files.
	BlockSize int `json:"block_size,omitempty"`
	// DataChecksums is the server's data_checksums ("on" or "off") when
	// the backup was taken: pg_checksums can change it while the server
	// is down, rewriting pages without changing their LSNs, so an
	// incremental builds only on a backup taken with the same setting.
	DataChecksums string `json:"data_checksums,omitempty"`
	// RangeSize is the length of the ranges of File.RangeCRCs (see
	// ranges.go); written since incrementals read only changed blocks.
	RangeSize int64  `json:"crc_range_size,omitempty"`
	Parts     []Part `json:"parts"`
	FileCount int    `json:"file_count"`
	Files     []File `json:"files,omitempty"`
}

// FileOwner is who owned the data directory; restore run as root hands the
// files back to the same user (by name first: uids differ between hosts).
type FileOwner struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
}

// Database is one database of the backed-up cluster.
type Database struct {
	OID  uint32 `json:"oid"`
	Name string `json:"name"`
}

// Tablespace is one entry of pg_tblspc.
type Tablespace struct {
	OID      uint32 `json:"oid"`
	Name     string `json:"name,omitempty"`
	Location string `json:"location"`
}

// Part is one stored tar object of a backup.
type Part struct {
	Name       string `json:"name"`
	Tablespace uint32 `json:"tablespace,omitempty"` // 0: the data directory
	Files      int    `json:"files"`
	Size       int64  `json:"size"`        // tar bytes, before compression and encryption
	StoredSize int64  `json:"stored_size"` // bytes of the stored object
	SHA256     string `json:"sha256"`      // of the stored object
	// Sums is the SHA-256 of the part's sums object (see sums.go), which
	// authenticates it chunk by chunk: manifest format 3 and later.
	Sums string `json:"sums_sha256,omitempty"`
	// Index and IndexSize are the SHA-256 and size of the stored bytes of
	// the part's block index (see blockindex.go), which lets a delta
	// restore fetch only some blocks; written since delta restore reads
	// ranges, for parts in lz4 or without compression. Readers that do not
	// know them ignore them (the part is as it always was).
	Index     string `json:"index_sha256,omitempty"`
	IndexSize int64  `json:"index_stored_size,omitempty"`
}

// File types in the manifest.
const (
	TypeFile    = ""
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Where an incremental backup keeps a file's content (File.Stored).
const (
	// StoredWhole: the whole content is the file's entry in Part (the
	// only kind a full backup has).
	StoredWhole = ""
	// StoredBlocks: the entry in Part holds the blocks set in File.Blocks,
	// in block order, each BlockSize bytes; every other block below
	// Size/BlockSize is the parent's block at the same path (as the
	// parent itself resolves it).
	StoredBlocks = "blocks"
	// StoredParent: nothing is stored; the content is the parent's file
	// at the same path, cut to Size.
	StoredParent = "parent"
)

// File is one entry of the backup. Path is relative to the data directory,
// '/'-separated; tablespace contents live under pg_tblspc/<oid>/. Size and
// CRC32C always describe the file's whole content as of this backup, also
// when an incremental stores only some of its blocks.
type File struct {
	Path   string    `json:"path"`
	Type   string    `json:"type,omitempty"`
	Part   int       `json:"part"`
	Size   int64     `json:"size,omitempty"`
	Mode   string    `json:"mode"` // octal permission bits, e.g. "0600"
	MTime  time.Time `json:"mtime"`
	CRC32C string    `json:"crc32c,omitempty"` // hex, regular files only
	Link   string    `json:"link,omitempty"`
	// Stored and Blocks: see StoredWhole, StoredBlocks, StoredParent.
	// Blocks is a BlockMap in base64 (standard, padded).
	Stored string `json:"stored,omitempty"`
	Blocks string `json:"blocks,omitempty"`
	// RangeCRCs are the CRC-32C of each Manifest.RangeSize bytes of the
	// file's content (ranges.go), for relation files.
	RangeCRCs string `json:"range_crc32c,omitempty"`
	// TarOffset is where the file's content starts in its part's tar
	// stream (after its header), for a regular file of a part with a
	// block index.
	TarOffset int64 `json:"tar_offset,omitempty"`
}

// Incremental says whether m is an incremental backup.
func (m *Manifest) Incremental() bool { return m.Type == BackupIncremental }

// Perm parses Mode.
func (f File) Perm() uint32 {
	v, err := strconv.ParseUint(f.Mode, 8, 32)
	if err != nil {
		return 0o600
	}
	return uint32(v) & 0o7777 // #nosec G115 -- masked
}

// Bounds on what a manifest may hold: generous for anything PostgreSQL and
// walvault write, small enough that text read from the store cannot flood
// memory, a log or a terminal.
const (
	maxNameLen          = 128      // backup, tablespace, user and group names
	maxPathLen          = 4096     // PATH_MAX
	maxHostnameLen      = 255      // what DNS allows
	maxTextLen          = 1024     // software, pg_version_string
	maxLabelLen         = 64 << 10 // backup_label
	maxTablespaceMapLen = 1 << 20
	maxAnnotations      = 64
	maxAnnotationLen    = 1 << 10 // key and value together
)

// ValidBackupName says whether name is one walvault could have given a
// backup: [A-Za-z0-9][A-Za-z0-9._-]{0,127}, as in
// base_20261129T211500Z_000000010000000000000004. Names read from the store
// end up in paths, settings files and terminals; nothing else is allowed.
func ValidBackupName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i, c := range []byte(name) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// badRune returns the index of the first byte of s that is not plain text
// (-1 when there is none): invalid UTF-8, a C0 control (but '\n' when
// newlines is set), DEL, a C1 control, a line or paragraph separator, or a
// Unicode format character such as the bidi override U+202E, which can
// make a terminal show other text than what is there.
func badRune(s string, newlines bool) int {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"),
			r < 0x20 && (r != '\n' || !newlines),
			r >= 0x7f && r <= 0x9f,
			r == 0x2028 || r == 0x2029,
			unicode.Is(unicode.Cf, r):
			return i
		}
	}
	return -1
}

// checkText bounds a text field and refuses control characters in it. The
// value is not quoted in the error: it may be long.
func checkText(field, s string, maxLen int, newlines bool) error {
	if err := textError(s, maxLen, newlines); err != nil {
		return fmt.Errorf("%s %w", field, err)
	}
	return nil
}

// textError is checkText without the field's name, which file entries
// only build when there is an error.
func textError(s string, maxLen int, newlines bool) error {
	if len(s) > maxLen {
		return fmt.Errorf("is %d bytes long, more than %d", len(s), maxLen)
	}
	if i := badRune(s, newlines); i >= 0 {
		return fmt.Errorf("holds a control or format character (byte %d)", i)
	}
	return nil
}

// short quotes s for an error message, cut to a readable length.
func short(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "..."
	}
	return strconv.Quote(s)
}

// Validate checks a whole manifest as a reader would: what is about to be
// written must read back.
func (m *Manifest) Validate() error { return m.validate(true) }

// validate checks what later code relies on; full also checks the file
// list, whose paths restore writes to. Everything in a manifest came from
// the store, so every string is checked: bounded, and free of control
// characters.
func (m *Manifest) validate(full bool) error {
	if m.Format < 1 || m.Format > ManifestFormat {
		return fmt.Errorf("manifest format %d is not supported by this walvault (it reads up to %d): upgrade walvault", m.Format, ManifestFormat)
	}
	if !ValidBackupName(m.Name) {
		return fmt.Errorf("bad backup name %s", short(m.Name))
	}
	if m.Timeline == 0 || !archive.ValidSegmentSize(m.SegmentSize) {
		return errors.New("timeline or WAL segment size missing")
	}
	if !digits(m.SystemIdentifier, 20) {
		return fmt.Errorf("bad system_identifier %s", short(m.SystemIdentifier))
	}
	if err := m.checkWAL(); err != nil {
		return err
	}
	if err := m.checkChain(); err != nil {
		return err
	}
	if m.RangeSize != 0 && !validRangeSize(m.RangeSize) {
		return fmt.Errorf("crc_range_size %d is not a power of two from 1 KiB to 1 GiB", m.RangeSize)
	}
	if m.DataChecksums != "" && m.DataChecksums != "on" && m.DataChecksums != "off" {
		return fmt.Errorf("data_checksums %s is neither on nor off", short(m.DataChecksums))
	}
	switch m.Compression {
	case "", "lz4", "zstd", "none":
	default:
		return fmt.Errorf("unknown compression %s", short(m.Compression))
	}
	if err := m.checkText(); err != nil {
		return err
	}
	if err := checkDatabases(m.Databases); err != nil {
		return err
	}
	if err := checkTablespaces(m.Tablespaces); err != nil {
		return err
	}
	if len(m.Parts) == 0 {
		return errors.New("no parts")
	}
	for i, p := range m.Parts {
		if p.Name != PartName(i) {
			return fmt.Errorf("part %d is named %s", i, short(p.Name))
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("part %s has no valid sha256", p.Name)
		}
		if hasSums := isHex(p.Sums, 64); hasSums != (m.Format >= ManifestFormatSums) || !hasSums && p.Sums != "" {
			return fmt.Errorf("part %s: sums_sha256 %s does not fit manifest format %d", p.Name, short(p.Sums), m.Format)
		}
		if p.Size < 0 || p.StoredSize < 0 {
			return fmt.Errorf("part %s has a negative size", p.Name)
		}
		if p.Index != "" && (!isHex(p.Index, 64) || p.IndexSize <= 0 || p.IndexSize > maxIndexLen(p.Size)+1<<20 || p.Sums == "") ||
			p.Index == "" && p.IndexSize != 0 {
			return fmt.Errorf("part %s: index_sha256 %s with index_stored_size %d", p.Name, short(p.Index), p.IndexSize)
		}
	}
	if !full {
		return nil
	}
	if len(m.Files) != m.FileCount {
		return fmt.Errorf("lists %d files, says %d", len(m.Files), m.FileCount)
	}
	for i := range m.Files {
		if err := m.Files[i].check(len(m.Parts), m); err != nil {
			return err
		}
	}
	return nil
}

// checkChain checks the type and, for an incremental, its ancestry.
func (m *Manifest) checkChain() error {
	switch m.Type {
	case "", BackupFull:
		if m.Parent != "" || m.ParentManifestSHA256 != "" || len(m.Chain) != 0 {
			return errors.New("a full backup names a parent")
		}
		return nil
	case BackupIncremental:
	default:
		return fmt.Errorf("unknown backup type %s", short(m.Type))
	}
	if m.Format < ManifestFormatIncremental {
		return fmt.Errorf("an incremental backup in manifest format %d", m.Format)
	}
	if len(m.Chain) == 0 || len(m.Chain) > MaxChain || m.Chain[0] != m.Parent {
		return fmt.Errorf("an incremental backup needs a chain of 1 to %d ancestors, its parent first", MaxChain)
	}
	seen := make(map[string]bool, len(m.Chain)+1)
	seen[m.Name] = true
	for _, a := range m.Chain {
		if !ValidBackupName(a) || seen[a] {
			return fmt.Errorf("bad or repeated backup name %s in the chain", short(a))
		}
		seen[a] = true
	}
	if b, err := hex.DecodeString(m.ParentManifestSHA256); err != nil || len(b) != 32 {
		return errors.New("an incremental backup needs its parent's manifest sha256")
	}
	if m.BlockSize < 1024 || m.BlockSize > 32768 || m.BlockSize&(m.BlockSize-1) != 0 {
		return fmt.Errorf("block_size %d is not a PostgreSQL block size", m.BlockSize)
	}
	return nil
}

// checkWAL: start_wal and stop_wal name segments of the backup's timeline
// and segment size, in order. (That they hold the start and stop LSNs is
// not required: test fixtures and tools name ranges without LSNs.)
func (m *Manifest) checkWAL() error {
	if m.StopLSN < m.StartLSN {
		return fmt.Errorf("stop_lsn %s is before start_lsn %s", m.StopLSN, m.StartLSN)
	}
	var seg [2]uint64
	for i, w := range []struct{ field, name string }{{"start_wal", m.StartWAL}, {"stop_wal", m.StopWAL}} {
		f, err := archive.ParseWALName(w.name)
		if err != nil || f.Kind != archive.KindSegment || uint64(f.Seg) >= archive.SegmentsPerLog(m.SegmentSize) {
			return fmt.Errorf("%s %s is not a WAL segment name for %d-byte segments", w.field, short(w.name), m.SegmentSize)
		}
		if f.Timeline != m.Timeline {
			return fmt.Errorf("%s %s is not on timeline %d", w.field, w.name, m.Timeline)
		}
		seg[i] = f.SegNo(m.SegmentSize)
	}
	if seg[1] < seg[0] {
		return fmt.Errorf("stop_wal %s is before start_wal %s", m.StopWAL, m.StartWAL)
	}
	return nil
}

// checkText checks the free-text fields of the head.
func (m *Manifest) checkText() error {
	for _, f := range []struct {
		field, s string
		max      int
		newlines bool
	}{
		{"hostname", m.Hostname, maxHostnameLen, false},
		{"software", m.Software, maxTextLen, false},
		{"pg_version_string", m.PGVersionString, maxTextLen, false},
		{"pgdata", m.PGData, maxPathLen, false},
		{"owner user", m.Owner.User, maxNameLen, false},
		{"owner group", m.Owner.Group, maxNameLen, false},
		{"backup_label", m.BackupLabel, maxLabelLen, true},
		{"tablespace_map", m.TablespaceMap, maxTablespaceMapLen, true},
	} {
		if err := checkText(f.field, f.s, f.max, f.newlines); err != nil {
			return err
		}
	}
	if len(m.Annotations) > maxAnnotations {
		return fmt.Errorf("%d annotations, more than %d", len(m.Annotations), maxAnnotations)
	}
	for k, v := range m.Annotations {
		if k == "" || len(k)+len(v) > maxAnnotationLen {
			return fmt.Errorf("annotation %s: keys must be non-empty, and key and value at most %d bytes together", short(k), maxAnnotationLen)
		}
		if badRune(k, false) >= 0 || badRune(v, false) >= 0 {
			return fmt.Errorf("annotation %s holds a control or format character", short(k))
		}
	}
	return nil
}

// maxDatabases bounds the databases a manifest may name.
const maxDatabases = 100000

// checkDatabases: names are bounded text without control characters.
func checkDatabases(dbs []Database) error {
	if len(dbs) > maxDatabases {
		return fmt.Errorf("%d databases, at most %d", len(dbs), maxDatabases)
	}
	for _, d := range dbs {
		if err := checkText(fmt.Sprintf("the name of database %d", d.OID), d.Name, maxNameLen, false); err != nil {
			return err
		}
	}
	return nil
}

// checkTablespaces: OIDs name pg_tblspc entries, so 0 (which would mean
// the data directory itself) and duplicates are refused; locations are
// absolute and clean.
func checkTablespaces(spcs []Tablespace) error {
	seen := make(map[uint32]bool, len(spcs))
	for _, t := range spcs {
		if t.OID == 0 || seen[t.OID] {
			return fmt.Errorf("tablespace OID %d is zero or listed twice", t.OID)
		}
		seen[t.OID] = true
		if err := checkText(fmt.Sprintf("the name of tablespace %d", t.OID), t.Name, maxNameLen, false); err != nil {
			return err
		}
		where := fmt.Sprintf("the location of tablespace %d", t.OID)
		if err := checkText(where, t.Location, maxPathLen, false); err != nil {
			return err
		}
		if !path.IsAbs(t.Location) || path.Clean(t.Location) != t.Location {
			return fmt.Errorf("%s, %s, is not an absolute, clean path", where, short(t.Location))
		}
	}
	return nil
}

// check validates one file entry of backup m, which has parts parts.
func (f *File) check(parts int, m *Manifest) error {
	if len(f.Path) > maxPathLen || !SafeRelPath(f.Path) {
		return fmt.Errorf("unsafe path %s", short(f.Path))
	}
	for _, t := range []struct {
		field, s string
		max      int
	}{{"path", f.Path, maxPathLen}, {"link", f.Link, maxPathLen}, {"mode", f.Mode, 8}} {
		if err := textError(t.s, t.max, false); err != nil {
			return fmt.Errorf("%s: %s %w", short(f.Path), t.field, err)
		}
	}
	if f.Part < 0 || f.Part >= parts {
		return fmt.Errorf("%s: part %d out of range", short(f.Path), f.Part)
	}
	if b, err := hex.DecodeString(f.CRC32C); err != nil || len(b) != 4 && f.CRC32C != "" {
		return fmt.Errorf("%s: bad checksum %s", short(f.Path), short(f.CRC32C))
	}
	switch f.Type {
	case TypeFile:
		if f.CRC32C == "" || f.Size < 0 {
			return fmt.Errorf("%s: no checksum", short(f.Path))
		}
	case TypeDir, TypeSymlink:
	default:
		return fmt.Errorf("%s: unknown type %s", short(f.Path), short(f.Type))
	}
	if f.TarOffset != 0 {
		p := m.Parts[f.Part]
		if f.Type != TypeFile || f.Stored != StoredWhole || p.Index == "" || f.TarOffset < 0 || f.TarOffset > p.Size-f.Size {
			return fmt.Errorf("%s: tar_offset %d does not fit in part %s", short(f.Path), f.TarOffset, p.Name)
		}
	}
	if f.RangeCRCs != "" {
		if f.Type != TypeFile {
			return fmt.Errorf("%s: range checksums for a %s", short(f.Path), f.Type)
		}
		if _, err := DecodeRangeCRCs(f.RangeCRCs, f.Size, m.RangeSize); err != nil {
			return fmt.Errorf("%s: %w", short(f.Path), err)
		}
	}
	return f.checkStored(m)
}

// checkStored checks where an incremental keeps the file's content.
func (f *File) checkStored(m *Manifest) error {
	if f.Stored == StoredWhole {
		if f.Blocks != "" {
			return fmt.Errorf("%s: a block map for a file stored whole", short(f.Path))
		}
		return nil
	}
	if !m.Incremental() || f.Type != TypeFile {
		return fmt.Errorf("%s: stored %s outside an incremental backup", short(f.Path), short(f.Stored))
	}
	switch f.Stored {
	case StoredParent:
		if f.Blocks != "" || f.Part != 0 {
			return fmt.Errorf("%s: stored in the parent, with a block map or part", short(f.Path))
		}
	case StoredBlocks:
		if f.Size%int64(m.BlockSize) != 0 {
			return fmt.Errorf("%s: stored as blocks, but %d bytes is not a whole number of %d-byte blocks", short(f.Path), f.Size, m.BlockSize)
		}
		if _, err := DecodeBlockMap(f.Blocks, f.Size/int64(m.BlockSize)); err != nil {
			return fmt.Errorf("%s: %w", short(f.Path), err)
		}
	default:
		return fmt.Errorf("%s: unknown storage %s", short(f.Path), short(f.Stored))
	}
	return nil
}

// SafeRelPath accepts clean, relative, '/'-separated paths that stay below
// their root.
func SafeRelPath(p string) bool {
	return p != "" && p != "." && !strings.HasPrefix(p, "/") && path.Clean(p) == p &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.Contains(p, "\\") && !strings.ContainsRune(p, 0)
}

// EncodeManifest renders m as indented JSON, one file per line. Nothing is
// HTML-escaped, so a valid field takes at most twice its length in JSON
// (for '\n', '"' and '\\'), which DecodeManifest's bounds allow for.
func EncodeManifest(m *Manifest) ([]byte, error) {
	files := m.Files
	head := *m
	head.Files = nil
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&head); err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return buf.Bytes(), nil
	}
	// Splice the file list in, one compact object per line: readable and
	// far smaller than fully indented.
	buf.Truncate(buf.Len() - 3) // drop "\n}\n"
	buf.WriteString(",\n  \"files\": [\n")
	enc.SetIndent("", "")
	for i := range files {
		buf.WriteString("    ")
		// Encode appends '\n'; patch in the separator.
		if err := enc.Encode(&files[i]); err != nil {
			return nil, err
		}
		if i < len(files)-1 {
			buf.Truncate(buf.Len() - 1)
			buf.WriteString(",\n")
		}
	}
	buf.WriteString("  ]\n}\n")
	return buf.Bytes(), nil
}

// Bounds on what DecodeManifest buffers at a time. encoding/json holds a
// whole value before decoding it, so without them one long string (a
// 300 MB backup_label) would be read into memory whole.
const (
	// maxFieldBytes bounds one field of the head, in JSON: tablespace_map,
	// the largest, holds at most 1 MiB, at most 2 MiB escaped.
	maxFieldBytes = 4 << 20
	// maxEntryBytes bounds one part or file entry: a path and a link of
	// 4 KiB each, escaped, and a few short fields.
	maxEntryBytes = 64 << 10
	// maxKeyBytes bounds a field name.
	maxKeyBytes = 1 << 10
)

// budgetReader fails once more was read than the current value, the
// head or the whole manifest may hold. Reads are cut to what is left, so
// the decoder's read-ahead never costs more than the limits.
type budgetReader struct {
	r                 io.Reader
	total, head, left int64 // head < 0: past the head
	what              string
	entry             int // >= 0: entry of list what
	size              int64
}

// next starts a value: what names it in the error, size bounds it.
func (b *budgetReader) next(what string, size int64) { b.nextEntry(what, -1, size) }

// nextEntry starts entry i of list what.
func (b *budgetReader) nextEntry(what string, i int, size int64) {
	b.what, b.entry, b.size, b.left = what, i, size, size
}

func (b *budgetReader) Read(p []byte) (int, error) {
	n := min(b.total, b.left)
	if b.head >= 0 {
		n = min(n, b.head)
	}
	if n <= 0 {
		switch {
		case b.total <= 0:
			return 0, fmt.Errorf("the manifest is longer than %d bytes", int64(MaxManifestBytes))
		case b.head == 0:
			return 0, fmt.Errorf("the fields before the file list are longer than %d bytes", int64(MaxManifestHeadBytes))
		}
		if b.entry >= 0 {
			return 0, fmt.Errorf("entry %d of %s is longer than %d bytes", b.entry, b.what, b.size)
		}
		return 0, fmt.Errorf("%s is longer than %d bytes", b.what, b.size)
	}
	if int64(len(p)) > n {
		p = p[:n]
	}
	k, err := b.r.Read(p)
	b.total -= int64(k)
	b.left -= int64(k)
	if b.head >= 0 {
		b.head -= int64(k)
	}
	return k, err
}

// DecodeManifest reads a manifest. With summaryOnly it stops at the file
// list, so listing many backups reads only their heads. It streams: no
// field, part or file entry is buffered beyond its bound, nor the head
// beyond MaxManifestHeadBytes, nor the whole beyond MaxManifestBytes.
func DecodeManifest(r io.Reader, summaryOnly bool) (*Manifest, error) {
	b := &budgetReader{r: r, total: MaxManifestBytes, head: MaxManifestHeadBytes}
	dec := json.NewDecoder(b)
	b.next("the manifest's start", maxKeyBytes)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	var m Manifest
	for dec.More() {
		b.next("a field name", maxKeyBytes)
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		switch {
		case strings.EqualFold(key, "files"):
			if summaryOnly {
				return &m, m.validate(false)
			}
			b.head = -1
			if m.Files, err = decodeList[File](dec, b, "files"); err != nil {
				return nil, err
			}
		case strings.EqualFold(key, "parts"):
			if m.Parts, err = decodeList[Part](dec, b, "parts"); err != nil {
				return nil, err
			}
		default:
			if err := decodeField(dec, b, &m, key); err != nil {
				return nil, err
			}
		}
	}
	b.next("the manifest's end", maxKeyBytes)
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return &m, m.validate(!summaryOnly)
}

// decodeField decodes the value of field key into m, as json.Unmarshal
// would, holding at most maxFieldBytes of it.
func decodeField(dec *json.Decoder, b *budgetReader, m *Manifest, key string) error {
	b.next(fmt.Sprintf("field %s", short(key)), maxFieldBytes)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	name, _ := json.Marshal(key)
	obj := make([]byte, 0, len(name)+len(raw)+3)
	obj = append(append(append(append(append(obj, '{'), name...), ':'), raw...), '}')
	return json.Unmarshal(obj, m)
}

// decodeList decodes a JSON array (or null) one element at a time, each
// bounded by maxEntryBytes.
func decodeList[T any](dec *json.Decoder, b *budgetReader, field string) ([]T, error) {
	b.next(field, maxKeyBytes)
	t, err := dec.Token()
	if err != nil || t == nil {
		return nil, err
	}
	if t != json.Delim('[') {
		return nil, fmt.Errorf("%s is not a list", field)
	}
	var out []T
	for dec.More() {
		b.nextEntry(field, len(out), maxEntryBytes)
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	b.next(field, maxKeyBytes)
	_, err = dec.Token()
	return out, err
}
