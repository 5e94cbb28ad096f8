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
// Each object is one file. Metadata travels in a small envelope at the start
// of the file so that object and metadata appear together, atomically:
//
//	"WVO1" | uint32 big-endian length | JSON metadata | object bytes
func init() { Register("file", openFile) }

const (
	fileMagic     = "WVO1"
	fileTmpPrefix = ".tmp-"
	maxMetaLen    = 1 << 20
)

type fileStore struct {
	root     string
	uid, gid int // owner of new files and folders; -1: the process's
}

func openFile(_ context.Context, loc Location, _ Options) (Store, error) {
	root := filepath.Clean(loc.Path)
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("file store %s: cannot create the directory: %w", root, err)
	}
	s := &fileStore{root: root, uid: -1, gid: -1}
	// Run as root (a backup from cron, a restore by hand) in a store that
	// belongs to someone else (postgres, who runs archive_command), new
	// files and folders go to that owner: otherwise wal-push, as postgres,
	// could no longer read cluster.json or write into a folder root made.
	if st, err := os.Stat(root); err == nil && os.Geteuid() == 0 {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
			s.uid, s.gid = int(sys.Uid), int(sys.Gid)
		}
	}
	return s, nil
}

// own hands a new file or folder to the store's owner (see openFile).
func (s *fileStore) own(path string) error {
	if s.uid < 0 {
		return nil
	}
	return os.Lchown(path, s.uid, s.gid)
}

func (s *fileStore) String() string { return "file://" + s.root }

func (s *fileStore) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", Permanent(fmt.Errorf("invalid key %q", key))
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, fileTmpPrefix) {
			return "", Permanent(fmt.Errorf("invalid key %q", key))
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func (s *fileStore) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (err error) {
	dst, err := s.path(key)
	if err != nil {
		return err
	}
	if err := CheckMetadata(opts.Metadata); err != nil {
		return Permanent(fmt.Errorf("%s: put %s: %w", s, key, err))
	}
	dir := filepath.Dir(dst)
	if err := s.mkdirAllSync(dir); err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, fileTmpPrefix+filepath.Base(dst)+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640) // #nosec G304 G302 -- path built from a validated key; group-readable like its 0750 directory, for a backup group
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = s.own(tmp); err != nil {
		return err
	}
	meta, err := json.Marshal(opts.Metadata)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	var hdr [8]byte
	copy(hdr[:4], fileMagic)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(meta))) // #nosec G115 -- metadata is small
	if _, err = w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err = w.Write(meta); err != nil {
		return err
	}
	if _, err = io.Copy(w, ctxReader{ctx, r}); err != nil {
		return err
	}
	if err = w.Flush(); err != nil {
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
		if err = os.Link(tmp, dst); err != nil {
			if errors.Is(err, fs.ErrExist) {
				err = fmt.Errorf("%s: %s: %w", s, key, ErrExists)
			}
			return err
		}
		_ = os.Remove(tmp)
	} else if err = os.Rename(tmp, dst); err != nil {
		return err
	}
	return syncDir(dir)
}

func (s *fileStore) mkdirAllSync(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := s.mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	if err := s.own(dir); err != nil {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- our own directory
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readHeader reads the envelope of an open object file.
func readHeader(f *os.File, key string) (map[string]string, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:4]) != fileMagic {
		return nil, 0, fmt.Errorf("%s: not a walvault object (bad envelope)", key)
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n > maxMetaLen {
		return nil, 0, fmt.Errorf("%s: not a walvault object (metadata too large)", key)
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

func (s *fileStore) open(key string) (*os.File, ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	f, err := os.Open(p) // #nosec G304 -- path built from a validated key
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ObjectInfo{}, fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
		}
		return nil, ObjectInfo{}, err
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		err = fmt.Errorf("%s: %s: %w", s, key, ErrNotFound)
	}
	if err != nil {
		_ = f.Close()
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
	base := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		base = prefix[:i]
	}
	startDir := filepath.Join(s.root, filepath.FromSlash(base))
	var keys []ObjectInfo
	seen := map[string]bool{}
	err := filepath.WalkDir(startDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p == startDir || strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				return nil
			}
			return fs.SkipDir
		}
		if strings.HasPrefix(d.Name(), fileTmpPrefix) || !strings.HasPrefix(key, prefix) {
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
			if f, info, err := s.open(k.Key); err == nil {
				_ = f.Close()
				k = info
			}
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *fileStore) Delete(_ context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(p))
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
