package cloud

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// The file:// backend: the embedded default, no server and no credentials.
//
// # Layout
//
// Each object is one file, at its key under the store directory (key
// "wal/0000000100000000/000000010000000000000001" is the file
// <dir>/wal/0000000100000000/000000010000000000000001), created 0640 in
// folders created 0750. Writes go to a ".tmp-" file in the same folder,
// fsynced, then moved into place with rename(2), or with link(2) for a
// create-if-absent Put (link fails when the name exists), and the folder is
// fsynced: a reader sees the whole object or none.
//
// # Envelope
//
// Metadata travels in a small envelope at the start of the file, so that
// object and metadata appear together, atomically:
//
//	bytes 0-3         magic: the ASCII characters "WVO1"
//	bytes 4-7         LEN: the length of the metadata, uint32 big-endian (at most 8 KiB)
//	bytes 8-(7+LEN)   metadata: one JSON object mapping string to string, compact, keys
//	                  sorted, as Go's encoding/json writes it ("null" when there is none)
//	bytes (8+LEN)-    the object bytes, exactly what the other backends store as the
//	                  object's body, up to the end of the file
//
// The metadata is the object's user metadata, which S3, GCS and Azure keep
// in headers. walvault writes "walvault-sha256" (hex SHA-256 of the plain
// content) and "walvault-size" (its length in bytes, decimal), and on
// signed objects "walvault-proof" (base64 Ed25519 signature over the key,
// SHA-256 and size) and "walvault-signer" (the signing key's ID).
//
// The object bytes are what `age`, `lz4` and `zstd` read: an age file when
// the object is encrypted ("age-encryption.org/v1" header), whose plaintext
// (or, unencrypted, the bytes themselves) is an lz4 frame, a zstd frame or
// the plain content (compression none). Stripping the envelope by hand:
//
//	LEN=$(od -An -j4 -N4 -tu4 --endian=big FILE)
//	tail -c +$((9+LEN)) FILE | age -d -i KEY | lz4 -dc    # or zstd -dc
//
// (without "age -d -i KEY |" for an unencrypted object, without the
// decompressor for compression none).
//
// # Symbolic links
//
// Every operation goes through an os.Root opened on the store directory:
// a symbolic link inside the store that leads outside it (or is absolute)
// is never followed, so whoever owns the store cannot send a root
// backup-push or restore into another directory. Writes, reads and
// deletes through such a link fail with errOutside, naming the key. A link
// that stays inside is followed as os.Root allows, except by List, which
// neither descends into links nor lists them (the store writes only files
// and folders). A Put or Delete of a key that is itself a link replaces or
// removes the link, never its target. The store directory itself may be a
// link (file:///backups pointing at a mount): it is resolved once, when
// the store is opened.
func init() { Register(Backend{Schemes: []string{"file"}, Open: openFile}) }

const (
	fileMagic     = "WVO1"
	fileTmpPrefix = ".tmp-"
	// maxMetaLen bounds the envelope's metadata: what walvault writes is
	// a few hundred bytes, and CheckMetadata caps what may be written at
	// less than this. Anyone can write the store: a reader allocates no
	// more.
	maxMetaLen = 8 << 10
)

// errOutside: a key's path goes through a symbolic link that leads outside
// the store. Permanent: retrying cannot help, someone must remove the link.
var errOutside = errors.New("a symbolic link in the store leads outside it; refusing to follow it")

type fileStore struct {
	dir      string   // the store directory, as given
	root     *os.Root // every access goes through it
	escapes  error    // os.Root's error for a path that leaves the root
	uid, gid int      // owner of new files and folders; -1: the process's
}

func openFile(_ context.Context, loc Location, opts Options) (Store, error) {
	dir := filepath.Clean(loc.Path)
	if opts.MustExist {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil, Permanent(NewStoreError(fmt.Sprintf("file store %s does not exist: fix the store URL, or create the directory (writers such as wal-push and backup-push create it)", dir), ErrNotFound, err))
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("file store %s: cannot create the directory: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("file store %s: cannot open the directory: %w", dir, err)
	}
	s := &fileStore{dir: dir, root: root, escapes: rootEscapeError(root), uid: -1, gid: -1}
	// Run as root (a backup from cron, a restore by hand) in a store that
	// belongs to someone else (postgres, who runs archive_command), new
	// files and folders go to that owner: otherwise wal-push, as postgres,
	// could no longer read cluster.json or write into a folder root made.
	if st, err := root.Stat("."); err == nil && os.Geteuid() == 0 {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
			s.uid, s.gid = int(sys.Uid), int(sys.Gid)
		}
	}
	return s, nil
}

// rootEscapeError returns the error os.Root reports for a path that leads
// outside it, a symbolic link's included. Package os does not export it;
// ".." always escapes, so asking for it yields that very error.
func rootEscapeError(r *os.Root) error {
	_, err := r.Lstat("..")
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Close releases the store directory.
func (s *fileStore) Close() error { return s.root.Close() }

// outside turns os.Root's refusal to leave the store into errOutside,
// naming the key; other errors pass unchanged.
func (s *fileStore) outside(op, key string, err error) error {
	if err != nil && s.escapes != nil && errors.Is(err, s.escapes) {
		return Permanent(fmt.Errorf("%s: %s %s: %w", s, op, key, errOutside))
	}
	return err
}

// own hands a new file or folder to the store's owner (see openFile).
func (s *fileStore) own(name string) error {
	if s.uid < 0 {
		return nil
	}
	return s.root.Lchown(name, s.uid, s.gid)
}

func (s *fileStore) String() string { return "file://" + s.dir }

// name is key's path relative to the store directory.
func (s *fileStore) name(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", Permanent(fmt.Errorf("invalid key %q", key))
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, fileTmpPrefix) {
			return "", Permanent(fmt.Errorf("invalid key %q", key))
		}
	}
	return filepath.FromSlash(key), nil
}

func (s *fileStore) Put(ctx context.Context, key string, r Body, opts PutOptions) (err error) {
	dst, err := s.name(key)
	if err != nil {
		return err
	}
	if err := CheckMetadata(opts.Metadata); err != nil {
		return Permanent(fmt.Errorf("%s: put %s: %w", s, key, err))
	}
	if opts.Retention != nil {
		return NoRetention(s)
	}
	defer func() { err = s.outside("put", key, err) }()
	dir := filepath.Dir(dst)
	if err := s.mkdirAllSync(dir); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, fileTmpPrefix+filepath.Base(dst)+"-"+hex.EncodeToString(rnd[:]))
	// O_EXCL: never through a link, even one that stays inside.
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640) // group-readable like its 0750 directory, for a backup group
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = s.root.Remove(tmp)
		}
	}()
	if err = s.own(tmp); err != nil {
		return err
	}
	meta, err := json.Marshal(opts.Metadata)
	if err != nil {
		return err
	}
	if err = writeObject(ctx, f, meta, r); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if opts.IfAbsent {
		// link(2) fails if the name exists: an atomic create-if-absent.
		if err = s.root.Link(tmp, dst); err != nil {
			if errors.Is(err, fs.ErrExist) {
				err = fmt.Errorf("%s: %s: %w", s, key, ErrExists)
			}
			return err
		}
		_ = s.root.Remove(tmp)
	} else if err = s.root.Rename(tmp, dst); err != nil {
		return err
	}
	return s.syncDir(dir)
}

// writeObject writes the object file: the magic, the metadata's length,
// the metadata, the body. A body in memory (a WAL segment encoded by
// wal-push or the agent) goes in one write, not copied through a buffer.
func writeObject(ctx context.Context, f *os.File, meta []byte, r Body) error {
	head := make([]byte, 8, 8+len(meta))
	copy(head[:4], fileMagic)
	binary.BigEndian.PutUint32(head[4:], uint32(len(meta))) // #nosec G115 -- metadata is small
	head = append(head, meta...)
	if b, ok := r.(*BytesBody); ok {
		if done, err := writeDirect(f, head, b.Unread()); done || err != nil {
			return err
		}
		if _, err := f.Write(head); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := f.Write(b.Unread())
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	if _, err := w.Write(head); err != nil {
		return err
	}
	if _, err := io.Copy(w, ctxReader{ctx, r}); err != nil {
		return err
	}
	return w.Flush()
}

// mkdirAllSync creates dir and its missing parents inside the store,
// handing each to the store's owner and fsyncing the folder that gained it.
func (s *fileStore) mkdirAllSync(dir string) error {
	_, err := s.root.Stat(dir)
	if err == nil {
		return nil
	}
	if errors.Is(err, s.escapes) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := s.mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := s.root.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	if err := s.own(dir); err != nil {
		return err
	}
	return s.syncDir(parent)
}

func (s *fileStore) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

// readHeader reads the envelope of an open object file.
func readHeader(f *os.File, key string) (map[string]string, int64, error) {
	n, err := readMetaLen(f, key)
	if err != nil {
		return nil, 0, err
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, 0, fmt.Errorf("%s: truncated envelope", key)
	}
	var meta map[string]string
	if err := json.Unmarshal(buf, &meta); err != nil {
		return nil, 0, fmt.Errorf("%s: bad envelope metadata: %v", key, err)
	}
	return meta, int64(8 + n), nil
}

// readMetaLen reads the first 8 bytes of an envelope: the magic and the
// metadata's length, bounded.
func readMetaLen(f *os.File, key string) (int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:4]) != fileMagic {
		return 0, fmt.Errorf("%s: not a walvault object (bad envelope)", key)
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n > maxMetaLen {
		return 0, fmt.Errorf("%s: not a walvault object (metadata of %d bytes, more than the %d walvault writes)", key, n, maxMetaLen)
	}
	return int64(n), nil
}

// openRegular opens the object file at key for reading. Only a regular
// file is an object: a FIFO, socket or device planted in the store is
// refused, without blocking on it (O_NONBLOCK: opening a FIFO for reading
// would wait for a writer, forever).
func (s *fileStore) openRegular(key string) (*os.File, fs.FileInfo, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, nil, err
	}
	f, err := s.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
		}
		return nil, nil, s.outside("read", key, err)
	}
	st, err := f.Stat()
	switch {
	case err != nil:
	case st.IsDir():
		err = fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	case !st.Mode().IsRegular():
		err = Permanent(fmt.Errorf("%s: %s is a %s, not a regular file: walvault writes only files; someone planted it", s, key, fileKind(st.Mode())))
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// fileKind names what a non-regular file is.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func (s *fileStore) open(key string) (*os.File, ObjectInfo, error) {
	f, st, err := s.openRegular(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	meta, off, err := readHeader(f, key)
	if err != nil {
		_ = f.Close()
		return nil, ObjectInfo{}, Permanent(err)
	}
	return f, ObjectInfo{Key: key, Size: st.Size() - off, ModTime: st.ModTime(), Metadata: meta}, nil
}

func (s *fileStore) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	f, info, err := s.open(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return ctxReadCloser{ctxReader{ctx, f}, f}, info, nil
}

func (s *fileStore) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := CheckRange(key, off, n); err != nil {
		return nil, err
	}
	f, info, err := s.open(key)
	if err != nil {
		return nil, err
	}
	if off >= info.Size || n == 0 {
		_ = f.Close()
		return EmptyBody(), nil
	}
	if _, err := f.Seek(off, io.SeekCurrent); err != nil {
		_ = f.Close()
		return nil, err
	}
	return ctxReadCloser{ctxReader{ctx, io.LimitReader(f, min(n, info.Size-off))}, f}, nil
}

func (s *fileStore) Stat(_ context.Context, key string) (ObjectInfo, error) {
	f, info, err := s.open(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	_ = f.Close()
	return info, nil
}

func (s *fileStore) List(ctx context.Context, prefix string, opts ListOptions, fn func(ObjectInfo) error) error {
	// Start at the deepest directory the prefix names fully.
	base := "."
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = prefix[:i]
	}
	if ok, err := s.realDir(base); !ok {
		return err
	}
	var keys []ObjectInfo
	seen := map[string]bool{}
	err := fs.WalkDir(s.root.FS(), base, func(key string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, s.escapes) {
				return nil // vanished, or became a link, under us
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if key == base || strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				return nil
			}
			return fs.SkipDir
		}
		// WalkDir never follows a link; skip them (and fifos, sockets)
		// too: the store writes only files, anything else was planted.
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), fileTmpPrefix) || !strings.HasPrefix(key, prefix) {
			return nil
		}
		if opts.Delimiter != "" {
			if i := strings.Index(key[len(prefix):], opts.Delimiter); i >= 0 {
				cp := key[:len(prefix)+i+len(opts.Delimiter)]
				if !seen[cp] {
					seen[cp] = true
					keys = append(keys, ObjectInfo{Key: cp, IsPrefix: true})
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return nil // vanished under us
		}
		keys = append(keys, ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
	for _, k := range keys {
		if !k.IsPrefix {
			// The object's size, without its envelope; its metadata is not
			// read (a listing carries none, as with the other backends).
			f, _, err := s.openRegular(k.Key)
			switch {
			case err == nil:
				if n, err := readMetaLen(f, k.Key); err == nil {
					k.Size -= 8 + n
				}
				_ = f.Close()
			case errors.Is(err, errOutside):
				continue // became a link under us
			}
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// realDir reports whether the listing base names a directory of the
// store reached without any link; a missing one, or one behind a link, has
// nothing to list.
func (s *fileStore) realDir(base string) (bool, error) {
	if !fs.ValidPath(base) {
		return false, nil // "..", "a//b": no key lies there
	}
	if base == "." {
		return true, nil
	}
	parts := strings.Split(base, "/")
	for i := range parts {
		fi, err := s.root.Lstat(filepath.FromSlash(strings.Join(parts[:i+1], "/")))
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, s.escapes):
			return false, nil
		case err != nil:
			return false, err
		case !fi.IsDir():
			return false, nil
		}
	}
	return true, nil
}

func (s *fileStore) Delete(_ context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	// Remove unlinks a link itself, never its target.
	if err := s.root.Remove(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return s.outside("delete", key, err)
	}
	return s.outside("delete", key, s.syncDir(filepath.Dir(name)))
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type ctxReadCloser struct {
	io.Reader
	io.Closer
}

// Load is LoadOnce: a local read that breaks is not worth another try.
func (s *fileStore) Load(ctx context.Context, key string, fn func(io.Reader, ObjectInfo) error) error {
	return LoadOnce(ctx, s, key, fn)
}
