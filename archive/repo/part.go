package repo

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// This file reads one part of a base backup, the tar stream restore writes
// out and verify checksums. What to do with each entry, and whether a
// problem stops everything or is noted, is the caller's.

// EntryFunc handles one entry of a part: its tar header, its record in the
// manifest (nil when the manifest does not list it) and its content. An
// error stops the part; ReadPart returns it.
type EntryFunc func(hdr *tar.Header, f *File, body io.Reader) error

// FileIndex finds a manifest record by path.
type FileIndex map[string]*File

// Index indexes m's file list by path.
func (m *Manifest) Index() FileIndex {
	idx := make(FileIndex, len(m.Files))
	for i := range m.Files {
		idx[m.Files[i].Path] = &m.Files[i]
	}
	return idx
}

// EntryPath is the manifest path of a tar entry: its name, without the
// trailing '/' of a directory.
func EntryPath(hdr *tar.Header) string { return strings.TrimSuffix(hdr.Name, "/") }

// PartOptions say how ReadPart treats a part that can only be
// authenticated at its end: one from a backup taken before walvault
// recorded sums (Part.Sums empty).
type PartOptions struct {
	// StageDir is where such a part is downloaded whole and checked before
	// its first entry is handed on ("": the system's temp directory).
	StageDir string
	// LateCheck hands such a part's entries on as they stream, the digest
	// checked at the end: for a caller whose verdict comes only after the
	// whole part was read (verify), never for one that acts on entries.
	LateCheck bool
}

// ReadPart loads part idx of backup m and hands each tar entry, with its
// record in files, to the EntryFunc start returns. The part's stored
// bytes are authenticated chunk by chunk against the sums object the
// manifest proves, before they are decoded: no entry, header or byte of
// content reaches the EntryFunc unproven. A part decodes to at most the
// tar size the manifest records, and what follows the tar's end must be
// zero padding. A download that breaks midway starts over: start is
// called at the beginning of every attempt, so the caller drops what it
// made of the earlier one. A damaged part (a chunk or digest that does not
// match, a stream that does not decode) is archive.ErrIntegrity naming it,
// or codec.ErrCorrupt when not even its header decodes; other errors are
// r.Load's (archive.ErrNotInArchive for a missing part) or the
// EntryFunc's.
func (r *Repo) ReadPart(ctx context.Context, m *Manifest, idx int, files FileIndex, o PartOptions, start func() EntryFunc) error {
	p := m.Parts[idx]
	key := BackupKey(m.Name, p.Name)
	where := fmt.Sprintf("%s in %s", key, r.Store)
	want := Want{Encrypted: PartsMustBeEncrypted(r, m), MaxSize: max(p.Size, 1)}
	fn := func(rd io.Reader, _ cloud.ObjectInfo) error {
		return readEntries(rd, files, start(), where)
	}
	switch {
	case p.Sums != "":
		s, err := r.LoadSums(ctx, key, p.Sums, p.StoredSize)
		if err != nil {
			return err
		}
		want.Sums = s
		return r.Load(ctx, key, want, fn)
	case o.LateCheck:
		want.StoredSHA256, want.StoredSize = p.SHA256, p.StoredSize
		return r.Load(ctx, key, want, fn)
	}
	return r.LoadStaged(ctx, key, p.SHA256, p.StoredSize, o.StageDir, want, fn)
}

// LoadStaged is Load for an object whose stored bytes can only be
// authenticated whole (sha256hex and size, from a proven manifest): it is
// downloaded into a temp file in dir ("": the system's) and checked, and
// only then decoded and handed to fn. The temp file is removed.
func (r *Repo) LoadStaged(ctx context.Context, key, sha256hex string, size int64, dir string, want Want, fn func(rd io.Reader, info cloud.ObjectInfo) error) error {
	where := fmt.Sprintf("%s in %s", key, r.Store)
	f, err := os.CreateTemp(dir, ".walvault-stage-*")
	if err != nil {
		return fmt.Errorf("%w: a temp file to check %s whole before use: %v", archive.ErrBadInput, key, err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	var info cloud.ObjectInfo
	err = r.Store.Load(ctx, key, func(body io.Reader, oi cloud.ObjectInfo) error {
		info = oi
		if err := startOver(f); err != nil {
			return readError{err}
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, size+1))
		if err != nil {
			return err
		}
		if sum := hex.EncodeToString(h.Sum(nil)); n != size || sum != sha256hex {
			return readError{fmt.Errorf("%w: %s: SHA-256 %.12s… over %d bytes, the manifest says %.12s… over %d: the stored object is damaged", archive.ErrIntegrity, where, sum, n, sha256hex, size)}
		}
		return nil
	})
	if err := r.loadError(key, where, err); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	want.StoredSHA256 = ""
	return r.loadError(key, where, r.read(key, bufio.NewReaderSize(f, 1<<20), info, want, where, fn))
}

// startOver empties f for another attempt.
func startOver(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// readEntries walks one tar stream, then reads what follows its end: only
// zero padding may, and the stored object's check runs there.
func readEntries(rd io.Reader, files FileIndex, fn EntryFunc, where string) error {
	tr := tar.NewReader(rd)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return undecodable(err, where)
		}
		if err := fn(hdr, files[EntryPath(hdr)], tr); err != nil {
			return undecodable(err, where)
		}
	}
	return undecodable(onlyPadding(rd, where), where)
}

// onlyPadding reads rd to its end and fails at the first byte that is not
// zero: nothing may follow a part's tar stream but its padding.
func onlyPadding(rd io.Reader, where string) error {
	buf := make([]byte, 32<<10)
	var at int64
	for {
		n, err := rd.Read(buf)
		for i, b := range buf[:n] {
			if b != 0 {
				return fmt.Errorf("%w: %s: byte %d after the end of its tar stream is not padding", archive.ErrIntegrity, where, at+int64(i))
			}
		}
		at += int64(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// undecodable tags a tar stream that breaks off as the part's damage;
// other errors pass unchanged.
func undecodable(err error, where string) error {
	if err == nil || errors.Is(err, archive.ErrIntegrity) || archive.IsContextErr(err) {
		return err
	}
	if errors.Is(err, codec.ErrCorrupt) || errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s does not decode: %w", archive.ErrIntegrity, where, err)
	}
	return err
}

// castagnoli is CRC-32C, the checksum of files in a manifest (PostgreSQL's
// backup manifests use it too).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C sums and counts what is written to it, to compare with a file's
// record in the manifest.
type CRC32C struct {
	sum uint32
	n   int64
}

func (c *CRC32C) Write(p []byte) (int, error) {
	c.sum = crc32.Update(c.sum, castagnoli, p)
	c.n += int64(len(p))
	return len(p), nil
}

// Reset starts a new sum.
func (c *CRC32C) Reset() { *c = CRC32C{} }

// Hex is the sum as a manifest writes it.
func (c *CRC32C) Hex() string { return fmt.Sprintf("%08x", c.sum) }

// Len is the number of bytes summed.
func (c *CRC32C) Len() int64 { return c.n }

// Matches says whether what was summed is f's content as the manifest
// records it.
func (c *CRC32C) Matches(f *File) bool { return c.n == f.Size && c.Hex() == f.CRC32C }

// PartsMustBeEncrypted says whether m's parts must be age-encrypted: when
// its authenticated manifest says so, the part digests it records decide
// (a backup taken without a recipient is not refused for it); a manifest
// read without authentication cannot vouch for that, so then every part
// must be encrypted when an identity is configured.
func PartsMustBeEncrypted(r *Repo, m *Manifest) bool { return m.Encrypted || r.AllowUnsigned }
