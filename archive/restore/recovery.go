package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/walvault/walvault/archive/repo"
)

// writeRecovery writes the signal file and appends the recovery settings,
// both owned by own when restore runs as root.
func writeRecovery(root *os.Root, s recoverySettings, m *repo.Manifest, own *owner) error {
	if err := disableOldRecovery(root, s.File); err != nil {
		return err
	}
	text := fmt.Sprintf("\n# Added by walvault restore of backup %s at %s.\n%s\n",
		m.Name, time.Now().UTC().Format(time.RFC3339), strings.Join(s.Lines, "\n"))
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

// disableOldRecovery comments out the recovery settings an earlier restore
// left in the settings file: a backup taken from a restored server carries
// them in postgresql.auto.conf, and a stale recovery_target_time would stop
// this recovery short of what it was asked for.
func disableOldRecovery(root *os.Root, file string) error {
	b, err := root.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
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
