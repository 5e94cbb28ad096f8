package cloud

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// plantedStore is a file:// store whose owner planted links leading out of
// it, next to an outside directory holding real walvault objects (so a
// store that followed the links would read them without complaint):
//
//	store/backups   -> outside          (a folder link)
//	store/wal/x     -> outside/passwd   (a file link)
//	store/wal/real                      (an honest object)
type plantedStore struct {
	st      Store
	dir     string // the store directory
	outside string
	before  []string // every path under outside, at the start
}

// plant builds a plantedStore, with absolute link targets or relative ones
// ("../outside"), which os.Root treats differently.
func plant(t *testing.T, relative bool) *plantedStore {
	t.Helper()
	ctx := context.Background()
	tmp := t.TempDir()
	p := &plantedStore{dir: filepath.Join(tmp, "store"), outside: filepath.Join(tmp, "outside")}
	out, err := Open(ctx, "file://"+p.outside, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = Close(out) }()
	for key, body := range map[string]string{"b1/manifest.json": "outside manifest", "passwd": "root:x:0:0:outside"} {
		if err := out.Put(ctx, key, Bytes([]byte(body)), PutOptions{Metadata: map[string]string{"walvault-size": "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if p.st, err = Open(ctx, "file://"+p.dir, Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Close(p.st) })
	if err := p.st.Put(ctx, "wal/real", Bytes([]byte("inside")), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	folder, file := p.outside, filepath.Join(p.outside, "passwd")
	if relative {
		folder, file = "../outside", "../../outside/passwd"
	}
	if err := os.Symlink(folder, filepath.Join(p.dir, "backups")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(p.dir, "wal", "x")); err != nil {
		t.Fatal(err)
	}
	p.before = tree(t, p.outside)
	return p
}

// tree lists every path under dir with its content, to see that nothing
// outside the store changed.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		line := p
		if !d.IsDir() {
			b, err := os.ReadFile(p) // #nosec G304 -- the test's own temp dir
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *plantedStore) outsideUnchanged(t *testing.T) {
	t.Helper()
	if after := tree(t, p.outside); !slices.Equal(after, p.before) {
		t.Errorf("the directory outside the store changed:\nbefore %q\nafter  %q", p.before, after)
	}
}

// refused checks that err is the permanent refusal naming key.
func refused(t *testing.T, what, key string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s %s through a link out of the store: no error", what, key)
	case !errors.Is(err, errOutside):
		t.Errorf("%s %s: %v, want the refusal to follow a link out of the store", what, key, err)
	case IsTransient(err):
		t.Errorf("%s %s: %v is retried, want a permanent error", what, key, err)
	case !strings.Contains(err.Error(), key):
		t.Errorf("%s %s: %q does not name the key", what, key, err)
	}
}

func eachPlanting(t *testing.T, fn func(t *testing.T, p *plantedStore)) {
	for _, relative := range []bool{false, true} {
		name := "absolute"
		if relative {
			name = "relative"
		}
		t.Run(name, func(t *testing.T) { fn(t, plant(t, relative)) })
	}
}

// TestFileStorePutStaysInside: a root backup-push through a planted
// backups -> /elsewhere link once created folders in a root-only directory.
func TestFileStorePutStaysInside(t *testing.T) {
	eachPlanting(t, func(t *testing.T, p *plantedStore) {
		ctx := context.Background()
		for _, key := range []string{"backups/b2/part-00000", "backups/b1/manifest.json", "backups/top"} {
			for _, ifAbsent := range []bool{false, true} {
				err := p.st.Put(ctx, key, Bytes([]byte("pushed")), PutOptions{IfAbsent: ifAbsent})
				refused(t, "put", key, err)
			}
		}
		p.outsideUnchanged(t)
		// A file link is replaced within the store, never written through.
		if err := p.st.Put(ctx, "wal/x", Bytes([]byte("pushed")), PutOptions{}); err != nil {
			t.Fatal(err)
		}
		p.outsideUnchanged(t)
		if fi, err := os.Lstat(filepath.Join(p.dir, "wal", "x")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("wal/x after a put: %v, %v; want a regular file in the store", fi, err)
		}
	})
}

// TestFileStoreGetStaysInside: a read never returns, or even opens, a file
// that a link leads to outside the store.
func TestFileStoreGetStaysInside(t *testing.T) {
	eachPlanting(t, func(t *testing.T, p *plantedStore) {
		ctx := context.Background()
		for _, key := range []string{"backups/b1/manifest.json", "backups/passwd", "wal/x"} {
			rc, _, err := p.st.Get(ctx, key)
			if err == nil {
				b, _ := io.ReadAll(rc)
				_ = rc.Close()
				t.Errorf("get %s read %q from outside the store", key, b)
				continue
			}
			refused(t, "get", key, err)
			_, err = p.st.Stat(ctx, key)
			refused(t, "stat", key, err)
		}
		// The honest object next to the link still reads.
		rc, _, err := p.st.Get(ctx, "wal/real")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if b, _ := io.ReadAll(rc); string(b) != "inside" {
			t.Errorf("wal/real = %q", b)
		}
	})
}

// TestFileStoreListStaysInside: a listing neither descends into links nor
// lists them, and a prefix cannot climb out of the store.
func TestFileStoreListStaysInside(t *testing.T) {
	eachPlanting(t, func(t *testing.T, p *plantedStore) {
		for _, c := range []struct {
			prefix, delim string
			want          []string
		}{
			{"", "", []string{"wal/real"}},
			{"", "/", []string{"wal/"}},
			{"wal/", "", []string{"wal/real"}},
			{"wal/x", "", nil},
			{"backups", "", nil},
			{"backups/", "", nil},
			{"backups/", "/", nil},
			{"backups/b1/", "", nil},
			{"backups/b1/m", "", nil},
			{"../", "", nil},
			{"../outside/", "", nil},
		} {
			var got []string
			err := p.st.List(context.Background(), c.prefix, ListOptions{Delimiter: c.delim}, func(o ObjectInfo) error {
				got = append(got, o.Key)
				return nil
			})
			if err != nil {
				t.Errorf("list %q: %v", c.prefix, err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("list %q (delimiter %q) = %q, want %q", c.prefix, c.delim, got, c.want)
			}
		}
	})
}

// TestFileStoreDeleteStaysInside: a delete through a folder link is
// refused; a delete of a file link removes the link, never its target.
func TestFileStoreDeleteStaysInside(t *testing.T) {
	eachPlanting(t, func(t *testing.T, p *plantedStore) {
		ctx := context.Background()
		for _, key := range []string{"backups/b1/manifest.json", "backups/passwd"} {
			refused(t, "delete", key, p.st.Delete(ctx, key))
		}
		if err := p.st.Delete(ctx, "wal/x"); err != nil {
			t.Errorf("delete wal/x: %v", err)
		}
		p.outsideUnchanged(t)
		if _, err := os.Lstat(filepath.Join(p.dir, "wal", "x")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the link wal/x is still there: %v", err)
		}
	})
}

// TestFileStoreDirMayBeLink: the store directory itself may be a link (a
// mount point elsewhere); only links inside it are refused.
func TestFileStoreDirMayBeLink(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	real := filepath.Join(tmp, "mnt", "backups")
	if err := os.MkdirAll(real, 0o750); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "backups")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, "file://"+link, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = Close(st) }()
	if err := st.Put(ctx, "wal/a/b", Bytes([]byte("x")), PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(real, "wal", "a", "b")); err != nil {
		t.Errorf("the object is not in the link's target: %v", err)
	}
	if _, err := st.Stat(ctx, "wal/a/b"); err != nil {
		t.Error(err)
	}
	var keys []string
	if err := st.List(ctx, "", ListOptions{}, func(o ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"wal/a/b"}) {
		t.Errorf("list = %q", keys)
	}
	if err := st.Delete(ctx, "wal/a/b"); err != nil {
		t.Error(err)
	}
}
