package cloud

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestFileStoreKeepsOwner: root writing into a store owned by another user
// (postgres runs archive_command) hands new files and folders to that
// user, so the next wal-push, as postgres, can read and write them.
func TestFileStoreKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root): checks files root creates in a store another user owns")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("needs a non-root user to own the store: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	root := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(root, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root, uid, gid); err != nil {
		t.Fatal(err)
	}
	st, err := Open(context.Background(), "file://"+root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(context.Background(), "a/b/cluster.json", Bytes([]byte("{}")), PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "a/b", "a/b/cluster.json"} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if s := fi.Sys().(*syscall.Stat_t); int(s.Uid) != uid || int(s.Gid) != gid {
			t.Errorf("%s is owned by %d:%d, want the store's owner %d:%d", p, s.Uid, s.Gid, uid, gid)
		}
	}
}
