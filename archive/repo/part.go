package repo

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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

// ReadPart loads part idx of backup m and hands each tar entry, with its
// record in files, to the EntryFunc start returns. The stored object is
// checked against the SHA-256 and size m records for it, to its very end.
// A download that breaks midway starts over: start is called at the
// beginning of every attempt, so the caller drops what it made of the
// earlier one. A damaged part (a digest that does not match, a stream that
// does not decode) is archive.ErrIntegrity naming it, or codec.ErrCorrupt
// when not even its header decodes; other errors are r.Load's
// (archive.ErrNotInArchive for a missing part) or the EntryFunc's.
func (r *Repo) ReadPart(ctx context.Context, m *Manifest, idx int, files FileIndex, start func() EntryFunc) error {
	p := m.Parts[idx]
	key := BackupKey(m.Name, p.Name)
	where := fmt.Sprintf("%s in %s", key, r.Store)
	want := Want{StoredSHA256: p.SHA256, StoredSize: p.StoredSize, Encrypted: PartsMustBeEncrypted(r, m)}
	return r.Load(ctx, key, want, func(rd io.Reader, _ cloud.ObjectInfo) error {
		return readEntries(rd, files, start(), where)
	})
}

// readEntries walks one tar stream, then reads what follows its end so
// the digest covers the whole stored object.
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
	_, err := io.Copy(io.Discard, rd)
	return undecodable(err, where)
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
