package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// ReadManifest fetches and parses the manifest of backup name. A backup
// without one does not exist: ErrNotInArchive.
func (r *Repo) ReadManifest(ctx context.Context, name string, summaryOnly bool) (*Manifest, error) {
	key := BackupKey(name, ManifestFile)
	var m *Manifest
	// Manifests are plain JSON today; the object layer passes plain bytes
	// through and would decode a compressed or encrypted one.
	err := r.Load(ctx, key, Want{Proof: true, MaxSize: MaxManifestBytes}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		var err error
		if m, err = DecodeManifest(rd, summaryOnly); err != nil && !archive.IsContextErr(err) && !errors.Is(err, archive.ErrStore) {
			return fmt.Errorf("%w: %s in %s is not a valid manifest: %v", archive.ErrIntegrity, key, r.Store, err)
		}
		return err
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, fmt.Errorf("backup %s: %w", name, archive.ErrNotInArchive)
	}
	if err != nil {
		return nil, err
	}
	if m.Name != name {
		return nil, fmt.Errorf("%w: %s in %s names backup %q", archive.ErrIntegrity, key, r.Store, m.Name)
	}
	return m, nil
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
