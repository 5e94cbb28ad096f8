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

// ReadManifestDigest reads backup name's whole manifest, as ReadManifest,
// and returns the hex SHA-256 of its bytes as stored: what an incremental
// records of its parent (ParentManifestSHA256), and what a restore of the
// incremental compares before it trusts the parent.
func (r *Repo) ReadManifestDigest(ctx context.Context, name string) (*Manifest, string, error) {
	key := BackupKey(name, ManifestFile)
	var m *Manifest
	var sum string
	err := r.Load(ctx, key, Want{Proof: true, MaxSize: MaxManifestBytes}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		h := sha256.New()
		tee := io.TeeReader(rd, h)
		var err error
		if m, err = DecodeManifest(tee, false); err != nil {
			if archive.IsContextErr(err) || errors.Is(err, archive.ErrStore) {
				return err
			}
			return fmt.Errorf("%w: %s in %s is not a valid manifest: %v", archive.ErrIntegrity, key, r.Store, err)
		}
		// The digest covers every byte, also what follows the JSON.
		if _, err := io.Copy(h, rd); err != nil {
			return err
		}
		sum = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if errors.Is(err, archive.ErrNotInArchive) {
		return nil, "", fmt.Errorf("backup %s: %w", name, archive.ErrNotInArchive)
	}
	if err != nil {
		return nil, "", err
	}
	if m.Name != name {
		return nil, "", fmt.Errorf("%w: %s in %s names backup %q", archive.ErrIntegrity, key, r.Store, m.Name)
	}
	return m, sum, nil
}
