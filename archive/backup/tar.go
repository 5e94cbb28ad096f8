package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// copyBufSize is the read size for data files: large enough that the
// per-call cost vanishes, small enough to keep memory bounded per worker.
const copyBufSize = 1 << 20

// tarEntryName is the name of an entry in a part: the manifest path,
// directories with a trailing '/'.
func tarEntryName(p, typ string) string {
	if typ == repo.TypeDir {
		return p + "/"
	}
	return p
}

// writeTar streams the entries of one part to w as a tar archive and
// returns what it wrote. Files are read as they are now: one that has
// vanished is left out, one that shrank is padded with zeros to the size
// its header announced (the header goes out before the data is read), one
// that grew is cut at that size. WAL replay from the backup's start
// repairs all three, as it does for pg_basebackup.
//
// inc, when not nil, makes it an incremental backup's part: files the
// parent has may be stored as changed blocks or not at all.
func writeTar(ctx context.Context, w io.Writer, ents []walkEntry, part int, buf []byte, onRead func(int64), inc *incremental) ([]repo.File, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	var files []repo.File
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f := repo.File{Path: e.Path, Type: e.Type, Part: part, Mode: fmt.Sprintf("%04o", e.Mode.Perm()), MTime: e.MTime.UTC()}
		switch e.Type {
		case repo.TypeDir, repo.TypeSymlink:
			hdr := &tar.Header{Name: tarEntryName(e.Path, e.Type), Mode: int64(e.Mode.Perm()), ModTime: e.MTime, Typeflag: tar.TypeDir}
			if e.Type == repo.TypeSymlink {
				hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			f.Link = e.Link
		case repo.TypeFile:
			var done bool
			var err error
			if inc != nil {
				done, err = inc.tarFile(tw, e, &f, buf, onRead)
			} else {
				done, err = tarFile(tw, e, &f, buf, onRead)
			}
			if err != nil {
				return nil, err
			}
			if !done {
				continue
			}
			if inc == nil {
				// The content went straight through after its header.
				f.TarOffset = cw.n - f.Size
			}
		}
		files = append(files, f)
	}
	return files, tw.Close()
}

// tarFile adds one regular file; done is false when it has vanished.
// openSource opens a file of the data directory for reading and states
// its size, mtime and mode in f. A file that vanished or is no longer a
// regular file yields a nil file and no error: the backup goes on
// without it (WAL replay recreates what it needs).
func openSource(e walkEntry, f *repo.File) (*os.File, fs.FileInfo, error) {
	src, err := os.Open(e.Abs) // #nosec G304 -- a file of the data directory being backed up
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			slog.Debug("file vanished during the backup", "path", e.Path)
			return nil, nil, nil
		}
		return nil, nil, localErr(err)
	}
	st, err := src.Stat()
	if err != nil || !st.Mode().IsRegular() {
		_ = src.Close() // only read from
		if err != nil {
			return nil, nil, localErr(err)
		}
		return nil, nil, nil
	}
	f.Size, f.MTime, f.Mode = st.Size(), st.ModTime().UTC(), fmt.Sprintf("%04o", st.Mode().Perm())
	return src, st, nil
}

func tarFile(tw *tar.Writer, e walkEntry, f *repo.File, buf []byte, onRead func(int64)) (done bool, err error) {
	src, st, err := openSource(e, f)
	if src == nil || err != nil {
		return false, err
	}
	defer func() { _ = src.Close() }()
	size := st.Size()
	hdr := &tar.Header{Name: e.Path, Mode: int64(st.Mode().Perm()), Size: size, ModTime: st.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return false, err
	}
	var crc uint32
	var rs *rangeSummer
	if hasRanges(e.Path, size) {
		rs = &rangeSummer{}
	}
	left := size
	for left > 0 {
		chunk := buf
		if int64(len(chunk)) > left {
			chunk = chunk[:left]
		}
		n, rerr := io.ReadFull(src, chunk)
		if n > 0 {
			crc = crc32.Update(crc, castagnoli, chunk[:n])
			if rs != nil {
				_, _ = rs.Write(chunk[:n])
			}
			if _, err := tw.Write(chunk[:n]); err != nil {
				return false, err
			}
			left -= int64(n)
			onRead(int64(n))
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return false, localErr(fmt.Errorf("reading %s: %w", e.Abs, rerr))
		}
	}
	if left > 0 {
		slog.Debug("file shrank during the backup; padding with zeros (WAL replay restores it)", "path", e.Path, "missing", left)
		clear(buf)
		for left > 0 {
			chunk := buf[:min(int64(len(buf)), left)]
			crc = crc32.Update(crc, castagnoli, chunk)
			if rs != nil {
				_, _ = rs.Write(chunk)
			}
			if _, err := tw.Write(chunk); err != nil {
				return false, err
			}
			left -= int64(len(chunk))
		}
	}
	f.CRC32C = crcHex(crc)
	if rs != nil {
		f.RangeCRCs = repo.EncodeRangeCRCs(rs.sums())
	}
	return true, nil
}

// countWriter counts what goes through it: where in the tar stream a
// file's content starts (repo.File.TarOffset).
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// localErr marks a local read failure as not worth retrying the upload for.
func localErr(err error) error { return cloud.Permanent(err) }

// memFile is a small file made in memory (backup_label, backup_manifest).
type memFile struct {
	Path string
	Data []byte
}

// writeMemTar writes in-memory files as a tar archive.
func writeMemTar(w io.Writer, files []memFile, part int, mtime time.Time) ([]repo.File, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	var out []repo.File
	for _, m := range files {
		hdr := &tar.Header{Name: m.Path, Mode: 0o600, Size: int64(len(m.Data)), ModTime: mtime, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		at := cw.n
		if _, err := tw.Write(m.Data); err != nil {
			return nil, err
		}
		out = append(out, repo.File{Path: m.Path, Part: part, Size: int64(len(m.Data)), Mode: "0600", MTime: mtime.UTC().Truncate(time.Second),
			CRC32C: crcHex(crc32.Checksum(m.Data, castagnoli)), TarOffset: at})
	}
	return out, tw.Close()
}
