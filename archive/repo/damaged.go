package repo

import (
	"errors"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/crypto"
)

// Damaged is a folder (a backup's or a dump's) whose manifest is there but
// cannot be trusted: it is damaged, fails authentication, or (a backup)
// its incremental chain is broken. Such a folder is no backup; readers
// name it and make their exit say so.
type Damaged struct {
	Name string
	Mark string // DAMAGED or UNAUTHENTICATED
	Size int64  // the folder's stored bytes
	Err  error  // why
	// Broken is, for an incremental backup whose chain is broken, its own
	// sound manifest (Type and Parent say what it is); nil when the
	// manifest itself cannot be read.
	Broken *Manifest
}

// DamageMark is how a folder whose manifest failed with err is marked:
// UNAUTHENTICATED when it fails authentication, else DAMAGED.
func DamageMark(err error) string {
	if errors.Is(err, crypto.ErrBadProof) {
		return "UNAUTHENTICATED"
	}
	return "DAMAGED"
}

// Damaged lists the backup folders whose manifest is there but cannot be
// trusted, by name.
func (c *Catalog) Damaged() []Damaged {
	var out []Damaged
	for _, f := range c.Folders {
		if f.Manifest != nil || f.Err == nil {
			continue
		}
		out = append(out, Damaged{Name: f.Name, Mark: DamageMark(f.Err), Size: f.Size, Err: f.Err, Broken: f.Broken})
	}
	return out
}

// DamagedDumps lists the dump folders whose manifest is there but cannot
// be trusted, by name.
func DamagedDumps(folders []*DumpFolder) []Damaged {
	var out []Damaged
	for _, f := range folders {
		if f.Err != nil {
			out = append(out, Damaged{Name: f.Name, Mark: DamageMark(f.Err), Size: f.Size, Err: f.Err})
		}
	}
	return out
}

// DamagedKind is what a list of damaged folders amounts to, for the exit
// code: crypto.ErrBadProof when one fails authentication, else
// archive.ErrIntegrity; nil for none.
func DamagedKind(bad []Damaged) error {
	if len(bad) == 0 {
		return nil
	}
	for _, b := range bad {
		if errors.Is(b.Err, crypto.ErrBadProof) {
			return crypto.ErrBadProof
		}
	}
	return archive.ErrIntegrity
}
