package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
)

// writeRecovery writes the signal file and appends the recovery settings,
// both owned by own when restore runs as root. Nothing of what it writes
// comes from the bucket: not even the backup's name goes into the comment,
// since PostgreSQL reads every line of the file as configuration.
func writeRecovery(root *os.Root, s recoverySettings, own *owner) error {
	if err := disableOldRecovery(root, s.File); err != nil {
		return err
	}
	text := fmt.Sprintf("\n%s\n%s\n", settingsComment(time.Now()), strings.Join(s.Lines, "\n"))
	f, err := root.OpenFile(s.File, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.File, err)
	}
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	files := []string{s.File}
	if s.Signal != "" {
		if err := root.WriteFile(s.Signal, nil, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", s.Signal, err)
		}
		files = append(files, s.Signal)
	}
	if own != nil {
		for _, n := range files {
			_ = root.Lchown(n, own.uid, own.gid)
		}
	}
	return nil
}

// settingsComment heads the settings restore appends.
func settingsComment(now time.Time) string {
	return "# Added by walvault restore at " + now.UTC().Format(time.RFC3339) + "."
}

// maxSettingsFile bounds the settings file restore reads back: a server's
// is a few kilobytes.
const maxSettingsFile = 16 << 20

// disableOldRecovery comments out the recovery settings an earlier restore
// left in the settings file: a backup taken from a restored server carries
// them in postgresql.auto.conf, and a stale recovery_target_time would stop
// this recovery short of what it was asked for.
func disableOldRecovery(root *os.Root, file string) error {
	fi, err := root.Lstat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil && (!fi.Mode().IsRegular() || fi.Size() > maxSettingsFile) {
		return fmt.Errorf("%w: %s in the backup is not a regular file of at most %d bytes", archive.ErrIntegrity, file, maxSettingsFile)
	}
	b, err := root.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	lines := strings.Split(string(b), "\n")
	changed := false
	for i, l := range lines {
		k, _, ok := strings.Cut(strings.TrimSpace(l), "=")
		k = strings.TrimSpace(k)
		if ok && (k == "restore_command" || k == "standby_mode" || strings.HasPrefix(k, "recovery_target")) {
			lines[i] = "# disabled by walvault restore: " + l
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return root.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600)
}
