package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/cloud"
)

// A backup is marked permanent (or ordinary again) by a signed mark record
// in its folder, never by rewriting its manifest: the manifest stays the
// one object its incrementals recorded the digest of, and putting an
// older copy of anything back changes nothing. The newest record, by the
// time it states (signed), decides; without one, the manifest's own flag
// (backup-push --permanent) does.
//
//	backups/<name>/mark-<UTC time>.json   {"backup": NAME, "permanent": true|false, "time": ...}

// MarkPrefix starts the name of a mark record in a backup's folder.
const MarkPrefix = "mark-"

// maxMarkBytes bounds a mark record: three short fields.
const maxMarkBytes = 4 << 10

// Mark is one mark record.
type Mark struct {
	Backup    string    `json:"backup"`
	Permanent bool      `json:"permanent"`
	Time      time.Time `json:"time"`
}

// markFile names a mark record made at t.
func markFile(t time.Time) string {
	return MarkPrefix + t.UTC().Format("20060102T150405.000000000Z") + ".json"
}

// MarkKey is the key of the mark record of backup name made at t.
func MarkKey(name string, t time.Time) string { return BackupKey(name, markFile(t)) }

// WriteMark stores a mark record for backup name, signed and write-once.
func (r *Repo) WriteMark(ctx context.Context, name string, permanent bool, now time.Time) error {
	mk := Mark{Backup: name, Permanent: permanent, Time: now.UTC()}
	body, err := json.Marshal(mk)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	key := MarkKey(name, now)
	if err := r.PutBytes(ctx, key, body, cloud.PutOptions{IfAbsent: true, Metadata: contentMeta(hex.EncodeToString(sum[:]), int64(len(body)))}); err != nil {
		return fmt.Errorf("%s: writing %s: %w", r.Store, key, err)
	}
	return nil
}

// readMark reads and authenticates one mark record of backup name.
func (r *Repo) readMark(ctx context.Context, name, file string) (Mark, error) {
	key := BackupKey(name, file)
	var mk Mark
	err := r.Load(ctx, key, Want{Proof: true, MaxSize: maxMarkBytes}, func(rd io.Reader, _ cloud.ObjectInfo) error {
		b, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&mk); err != nil {
			return fmt.Errorf("%w: %s in %s is not a mark record: %v", archive.ErrIntegrity, key, r.Store, err)
		}
		return nil
	})
	if err == nil && mk.Backup != name {
		err = fmt.Errorf("%w: %s in %s marks backup %s", archive.ErrIntegrity, key, r.Store, short(mk.Backup))
	}
	return mk, err
}

// applyMarks reads the mark records of folder f and sets m.Permanent from
// the newest that authenticates. One that does not is skipped, with a
// warning: a bucket writer cannot mark or unmark a backup.
func (r *Repo) applyMarks(ctx context.Context, f *BackupFolder, m *Manifest) error {
	var files []string
	for file := range f.Objects {
		if strings.HasPrefix(file, MarkPrefix) {
			files = append(files, file)
		}
	}
	sort.Strings(files)
	var newest *Mark
	for _, file := range files {
		mk, err := r.readMark(ctx, f.Name, file)
		switch {
		case err == nil:
			if newest == nil || !mk.Time.Before(newest.Time) {
				newest = &mk
			}
		case errors.Is(err, archive.ErrNotInArchive):
		case errors.Is(err, archive.ErrStore), archive.IsContextErr(err):
			return err
		default:
			slog.Warn("ignoring a mark record that fails authentication", "backup", f.Name, "file", file, "err", archive.OneLine(err.Error()))
		}
	}
	if newest != nil {
		m.Permanent = newest.Permanent
	}
	return nil
}
