package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// ReadManifest fetches, authenticates and parses the manifest of backup
// name. A backup without one does not exist: ErrNotInArchive.
func (r *Repo) ReadManifest(ctx context.Context, name string, summaryOnly bool) (*Manifest, error) {
	m, _, err := r.ReadManifestSum(ctx, name, summaryOnly)
	return m, err
}

// WriteManifest stores m's manifest, signed: create-if-absent when a new
// backup comes into existence, a replacement (one atomic Put) otherwise.
func (r *Repo) WriteManifest(ctx context.Context, m *Manifest, ifAbsent bool) error {
	// What readers would refuse is not written.
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%w: the manifest of %s would not read back: %w", archive.ErrBadInput, m.Name, err)
	}
	body, err := EncodeManifest(m)
	if err != nil {
		return err
	}
	key := BackupKey(m.Name, ManifestFile)
	sum := sha256.Sum256(body)
	meta := contentMeta(hex.EncodeToString(sum[:]), int64(len(body)))
	if err := r.PutBytes(ctx, key, body, cloud.PutOptions{IfAbsent: ifAbsent, Metadata: meta}); err != nil {
		return fmt.Errorf("%s: writing %s: %w", r.Store, key, err)
	}
	return nil
}
