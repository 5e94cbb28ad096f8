package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/walvault/walvault/crypto"
)

var (
	keysOnce sync.Once
	keysDir  string
	keysErr  error
)

// UseSigningKeys makes every walvault this test binary runs sign what it
// writes and authenticate what it reads, as a production set-up does: it
// creates one signing key, readable by the server's user (archive_command
// runs as that user), and sets WALVAULT_SIGNING_KEY and WALVAULT_VERIFY_KEY
// in the process environment, which walvault commands and PostgreSQL (and
// through it archive_command and restore_command) inherit. Call it from
// TestMain; remove the keys with Cleanup.
func UseSigningKeys() error {
	keysOnce.Do(func() {
		o, err := ServerOwner()
		if err != nil {
			keysErr = err
			return
		}
		if keysDir, keysErr = os.MkdirTemp("/tmp", "wvkeys-"); keysErr != nil {
			return
		}
		if keysErr = os.Chmod(keysDir, 0o755); keysErr != nil { // #nosec G302 -- the server owner must traverse it
			return
		}
		path := filepath.Join(keysDir, "signing.key")
		vk, err := crypto.GenerateSigningKey(path)
		if err != nil {
			keysErr = err
			return
		}
		if err := o.Chown(keysDir); err != nil {
			keysErr = fmt.Errorf("handing the signing key to the server's user: %w", err)
			return
		}
		keysErr = os.Setenv("WALVAULT_SIGNING_KEY", path)
		if keysErr == nil {
			keysErr = os.Setenv("WALVAULT_VERIFY_KEY", vk.String())
		}
	})
	return keysErr
}
