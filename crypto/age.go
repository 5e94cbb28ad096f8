// Package crypto encrypts and decrypts walvault objects with age
// (filippo.io/age): X25519 recipients, streaming, authenticated. Pushing
// needs only recipients (public keys); fetching needs an identity file.
package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"filippo.io/age"
)

// Header is how every age file starts; objects are detected by it.
const Header = "age-encryption.org/v1\n"

// Errors callers tell apart with errors.Is.
var (
	ErrBadKey      = errors.New("bad key")
	ErrNoIdentity  = errors.New("object is encrypted but no identity file is configured")
	ErrWrongKey    = errors.New("no configured identity can decrypt this object")
	ErrInsecureKey = errors.New("identity file is readable by others")
)

// IsEncrypted reports whether b (the start of an object) is an age file.
func IsEncrypted(b []byte) bool { return bytes.HasPrefix(b, []byte(Header)) }

// ParseRecipients accepts age public keys ("age1...") or paths to files that
// list them, one per line.
func ParseRecipients(specs []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, spec := range specs {
		for _, s := range strings.Split(spec, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if strings.HasPrefix(s, "age1") {
				r, err := age.ParseX25519Recipient(s)
				if err != nil {
					return nil, fmt.Errorf("%w: recipient %q does not parse: %v (expected an age public key from 'walvault keygen')", ErrBadKey, short(s), err)
				}
				out = append(out, r)
				continue
			}
			if keyLike(s) {
				return nil, fmt.Errorf("%w: a recipient is an age secret key: give its public key (age1..., printed by 'walvault keygen'); the secret key belongs only where restores run", ErrBadKey)
			}
			f, err := os.Open(s) // #nosec G304 -- a path the operator configured
			if err != nil {
				return nil, fmt.Errorf("%w: recipient %q is neither an age public key (age1...) nor a readable file: %v", ErrBadKey, short(s), err)
			}
			rs, err := age.ParseRecipients(f)
			_ = f.Close()
			if err != nil {
				return nil, fmt.Errorf("%w: recipients file %s: %v", ErrBadKey, s, err)
			}
			out = append(out, rs...)
		}
	}
	return out, nil
}

// keyLike reports whether s is an age secret key given where a file name
// or a public key belongs. Messages must not echo it: they end up in
// PostgreSQL's log.
func keyLike(s string) bool {
	return strings.HasPrefix(strings.ToUpper(strings.TrimSpace(s)), "AGE-SECRET-KEY-")
}

func short(s string) string {
	if len(s) > 16 {
		return s[:12] + "…"
	}
	return s
}

// LoadIdentities reads an age identity file. Files readable by group or
// others are refused unless allowInsecure: a leaked key opens every archive.
func LoadIdentities(path string, allowInsecure bool) ([]age.Identity, error) {
	if keyLike(path) {
		return nil, fmt.Errorf("%w: the identity file setting holds an age secret key, not a file name: put the key in a file (mode 0600) and give its path", ErrBadKey)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: identity file %s: %v", ErrBadKey, path, err)
	}
	if st.Mode().Perm()&0o077 != 0 && !allowInsecure {
		return nil, fmt.Errorf("%w: %s has mode %04o: run 'chmod 600 %s' (or pass --allow-insecure-identity)", ErrInsecureKey, path, st.Mode().Perm(), path)
	}
	f, err := os.Open(path) // #nosec G304 -- a path the operator configured
	if err != nil {
		return nil, fmt.Errorf("%w: identity file %s: %v", ErrBadKey, path, err)
	}
	defer func() { _ = f.Close() }()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("%w: identity file %s does not parse (expected an age secret key from 'walvault keygen')", ErrBadKey, path)
	}
	return ids, nil
}

// Encrypt returns a writer that encrypts to recipients and writes to w.
// Close must be called to write the final chunk.
func Encrypt(w io.Writer, recipients []age.Recipient) (io.WriteCloser, error) {
	return age.Encrypt(w, recipients...)
}

// Decrypt returns a reader of r's plaintext. Truncation and tampering are
// reported as errors while reading (age authenticates every 64 KiB chunk and
// marks the last one).
func Decrypt(r io.Reader, identities []age.Identity) (io.Reader, error) {
	if len(identities) == 0 {
		return nil, ErrNoIdentity
	}
	pr, err := age.Decrypt(r, identities...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, ErrWrongKey
		}
		return nil, fmt.Errorf("age header: %w", err)
	}
	return pr, nil
}

// Generate writes a new identity to path (mode 0600, never overwriting) and
// returns its recipient.
func Generate(path string) (string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", err
	}
	body := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	if err := writeNewKeyFile(path, body); err != nil {
		return "", err
	}
	return id.Recipient().String(), nil
}
