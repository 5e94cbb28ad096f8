package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// ManifestFormat is the version of manifest.json this build writes. A
// reader refuses newer formats rather than misread them.
const ManifestFormat = 1

// Manifest describes one base backup. Field order matters: Files comes
// last so that listing can stop reading a manifest before the file list.
type Manifest struct {
	Format           int               `json:"format"`
	Name             string            `json:"name"`
	Software         string            `json:"software,omitempty"`
	Hostname         string            `json:"hostname,omitempty"`
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
	BackupLabel      string            `json:"backup_label"`
	TablespaceMap    string            `json:"tablespace_map,omitempty"`
	Parts            []Part            `json:"parts"`
	FileCount        int               `json:"file_count"`
	Files            []File            `json:"files,omitempty"`
}

// FileOwner is who owned the data directory; restore run as root hands the
// files back to the same user (by name first: uids differ between hosts).
type FileOwner struct {
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
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
}

// File types in the manifest.
const (
	TypeFile    = ""
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// File is one entry of the backup. Path is relative to the data directory,
// '/'-separated; tablespace contents live under pg_tblspc/<oid>/.
type File struct {
	Path   string    `json:"path"`
	Type   string    `json:"type,omitempty"`
	Part   int       `json:"part"`
	Size   int64     `json:"size,omitempty"`
	Mode   string    `json:"mode"` // octal permission bits, e.g. "0600"
	MTime  time.Time `json:"mtime"`
	CRC32C string    `json:"crc32c,omitempty"` // hex, regular files only
	Link   string    `json:"link,omitempty"`
}

// Perm parses Mode.
func (f File) Perm() uint32 {
	v, err := strconv.ParseUint(f.Mode, 8, 32)
	if err != nil {
		return 0o600
	}
	return uint32(v) & 0o7777 // #nosec G115 -- masked
}

// validate checks what later code relies on; full also checks the file
// list, whose paths restore writes to.
func (m *Manifest) validate(full bool) error {
	if m.Format < 1 || m.Format > ManifestFormat {
		return fmt.Errorf("manifest format %d is not supported by this walvault (it reads up to %d): upgrade walvault", m.Format, ManifestFormat)
	}
	if m.Name == "" || strings.ContainsAny(m.Name, "/\\") {
		return fmt.Errorf("bad backup name %q", m.Name)
	}
	if m.Timeline == 0 || !archive.ValidSegmentSize(m.SegmentSize) {
		return errors.New("timeline or WAL segment size missing")
	}
	if len(m.Parts) == 0 {
		return errors.New("no parts")
	}
	for i, p := range m.Parts {
		if p.Name != PartName(i) {
			return fmt.Errorf("part %d is named %q", i, p.Name)
		}
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("part %s has no valid sha256", p.Name)
		}
	}
	if !full {
		return nil
	}
	if len(m.Files) != m.FileCount {
		return fmt.Errorf("lists %d files, says %d", len(m.Files), m.FileCount)
	}
	for _, f := range m.Files {
		if !SafeRelPath(f.Path) {
			return fmt.Errorf("unsafe path %q", f.Path)
		}
		if f.Part < 0 || f.Part >= len(m.Parts) {
			return fmt.Errorf("%s: part %d out of range", f.Path, f.Part)
		}
		switch f.Type {
		case TypeFile:
			if len(f.CRC32C) != 8 || f.Size < 0 {
				return fmt.Errorf("%s: no checksum", f.Path)
			}
		case TypeDir, TypeSymlink:
		default:
			return fmt.Errorf("%s: unknown type %q", f.Path, f.Type)
		}
	}
	return nil
}

// SafeRelPath accepts clean, relative, '/'-separated paths that stay below
// their root.
func SafeRelPath(p string) bool {
	return p != "" && p != "." && !strings.HasPrefix(p, "/") && path.Clean(p) == p &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.Contains(p, "\\") && !strings.ContainsRune(p, 0)
}

// EncodeManifest renders m as indented JSON, one file per line.
func EncodeManifest(m *Manifest) ([]byte, error) {
	files := m.Files
	head := *m
	head.Files = nil
	b, err := json.MarshalIndent(&head, "", "  ")
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return append(b, '\n'), nil
	}
	// Splice the file list in, one compact object per line: readable and
	// far smaller than fully indented.
	var buf bytes.Buffer
	buf.Write(b[:len(b)-2]) // drop "\n}"
	buf.WriteString(",\n  \"files\": [\n")
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
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

// DecodeManifest reads a manifest. With summaryOnly it stops at the file
// list, so listing many backups reads only their heads.
func DecodeManifest(r io.Reader, summaryOnly bool) (*Manifest, error) {
	dec := json.NewDecoder(r)
	if !summaryOnly {
		var m Manifest
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		return &m, m.validate(true)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		if key == "files" {
			break
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		fields[key] = v
	}
	b, _ := json.Marshal(fields)
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, m.validate(false)
}

// ReadManifest fetches and parses the manifest of backup name. A backup
// without one does not exist: ErrNotInArchive.
func (r *Repo) ReadManifest(ctx context.Context, name string, summaryOnly bool) (*Manifest, error) {
	key := BackupKey(name, ManifestFile)
	var m *Manifest
	// Manifests are plain JSON today; the object layer passes plain bytes
	// through and would decode a compressed or encrypted one.
	err := r.Load(ctx, key, Want{}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		var err error
		if m, err = DecodeManifest(rd, summaryOnly); err != nil && !archive.IsContextErr(err) && !errors.Is(err, archive.ErrStore) {
			return fmt.Errorf("%w: %s in %s is not a valid manifest: %v", archive.ErrIntegrity, key, r.Store, err)
		}
		return err
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, fmt.Errorf("backup %s: %w", name, archive.ErrNotInArchive)
	}
	if err != nil {
		return nil, err
	}
	if m.Name != name {
		return nil, fmt.Errorf("%w: %s in %s names backup %q", archive.ErrIntegrity, key, r.Store, m.Name)
	}
	return m, nil
}

// WriteManifest stores m's manifest: create-if-absent when a new backup
// comes into existence, a replacement (one atomic Put) otherwise.
func (r *Repo) WriteManifest(ctx context.Context, m *Manifest, ifAbsent bool) error {
	body, err := EncodeManifest(m)
	if err != nil {
		return err
	}
	key := BackupKey(m.Name, ManifestFile)
	if err := r.PutBytes(ctx, key, body, cloud.PutOptions{IfAbsent: ifAbsent}); err != nil {
		return fmt.Errorf("%s: writing %s: %w", r.Store, key, err)
	}
	return nil
}
