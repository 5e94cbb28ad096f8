// Package fsutil holds the few local-file steps walvault's commands share:
// writing a file so readers see all of it or nothing, and making a
// directory's entries durable.
package fsutil

import (
	"os"
	"path/filepath"
	"strconv"
)

// WriteFileAtomic writes data to path through a temp file and a rename, so
// readers see all of it or nothing; durable also fsyncs the file and its
// directory.
func WriteFileAtomic(path string, data []byte, durable bool) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) // #nosec G304 -- our own files
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if durable {
		return SyncDir(filepath.Dir(path))
	}
	return nil
}

// SyncDir makes the entries of dir (new names, renames) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- a directory we write to
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}
