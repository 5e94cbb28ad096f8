package crypto

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Objects are authenticated with Ed25519: the database host signs with a
// signing key (a secret the bucket never holds), restores verify with its
// public half, the verify key. A bucket writer holding the age recipient
// can encrypt, but cannot sign.

// Key texts. The verify key is public: it may sit in config files and in
// restore_command; the signing key is a secret kept in a 0600 file.
const (
	verifyKeyPrefix  = "walvault-verify-1-"
	signingKeyPrefix = "WALVAULT-SIGNING-KEY-1-"
)

// Errors of authentication, told apart with errors.Is.
var (
	// ErrBadProof: an object has no proof, or one that does not verify.
	ErrBadProof = errors.New("object fails authentication")
)

// SigningKey signs objects on the database host. Its key pair is derived
// from the seed at first use: the derivation builds Go's Ed25519 base
// point tables (about 1 ms of CPU), which a wal-push that finds its file
// already pushed ahead never needs.
type SigningKey struct {
	seed []byte
	once sync.Once
	priv ed25519.PrivateKey
	id   string
}

func (k *SigningKey) derive() {
	k.once.Do(func() {
		k.priv = ed25519.NewKeyFromSeed(k.seed)
		pub, _ := k.priv.Public().(ed25519.PublicKey)
		k.id = keyID(pub)
	})
}

// ID is the verify key's ID.
func (k *SigningKey) ID() string {
	k.derive()
	return k.id
}

// VerifyKey checks proofs.
type VerifyKey struct {
	pub ed25519.PublicKey
	ID  string // hex of the first 8 bytes of SHA-256 of the public key
}

func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// String is the verify key as configured (--verify-key).
func (v VerifyKey) String() string {
	return verifyKeyPrefix + base64.RawURLEncoding.EncodeToString(v.pub)
}

// Verify returns the key's public half.
func (k *SigningKey) Verify() VerifyKey {
	k.derive()
	pub, _ := k.priv.Public().(ed25519.PublicKey)
	return VerifyKey{pub: pub, ID: k.id}
}

// Sign signs msg.
func (k *SigningKey) Sign(msg []byte) []byte {
	k.derive()
	return ed25519.Sign(k.priv, msg)
}

// Check verifies sig over msg with whichever of keys has the ID signer.
func Check(keys []VerifyKey, signer string, msg, sig []byte) error {
	for _, k := range keys {
		if k.ID != signer {
			continue
		}
		if ed25519.Verify(k.pub, msg, sig) {
			return nil
		}
		return fmt.Errorf("%w: its signature does not verify with key %s", ErrBadProof, signer)
	}
	return fmt.Errorf("%w: it is signed by key %q, which is not among the configured verify keys", ErrBadProof, signer)
}

// ParseVerifyKeys accepts verify keys (walvault-verify-1-...) or paths to
// files that hold them, one per line ('#' comments allowed).
func ParseVerifyKeys(specs []string) ([]VerifyKey, error) {
	var out []VerifyKey
	for _, spec := range specs {
		for _, s := range strings.Split(spec, ",") {
			s = strings.TrimSpace(s)
			switch {
			case s == "":
				continue
			case strings.HasPrefix(s, signingKeyPrefix):
				return nil, fmt.Errorf("%w: a verify key is a signing key's public half (walvault-verify-1-..., printed by 'walvault keygen'); the signing key itself belongs only on the database host", ErrBadKey)
			case strings.HasPrefix(s, verifyKeyPrefix):
				k, err := parseVerifyKey(s)
				if err != nil {
					return nil, err
				}
				out = append(out, k)
				continue
			}
			b, err := os.ReadFile(s) // #nosec G304 -- a path the operator configured
			if err != nil {
				return nil, fmt.Errorf("%w: verify key %q is neither a key (walvault-verify-1-...) nor a readable file: %v", ErrBadKey, short(s), err)
			}
			n := 0
			for _, line := range strings.Split(string(b), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				k, err := parseVerifyKey(line)
				if err != nil {
					return nil, fmt.Errorf("verify key file %s: %w", s, err)
				}
				out = append(out, k)
				n++
			}
			if n == 0 {
				return nil, fmt.Errorf("%w: verify key file %s holds no key", ErrBadKey, s)
			}
		}
	}
	return out, nil
}

func parseVerifyKey(s string) (VerifyKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, verifyKeyPrefix))
	if !strings.HasPrefix(s, verifyKeyPrefix) || err != nil || len(b) != ed25519.PublicKeySize {
		return VerifyKey{}, fmt.Errorf("%w: verify key %q does not parse (expected walvault-verify-1- and 43 characters, printed by 'walvault keygen')", ErrBadKey, short(s))
	}
	pub := ed25519.PublicKey(b)
	return VerifyKey{pub: pub, ID: keyID(pub)}, nil
}

// LoadSigningKey reads a signing key file. Files readable by group or
// others are refused unless allowInsecure: a leaked signing key lets anyone
// forge archive objects.
func LoadSigningKey(path string, allowInsecure bool) (*SigningKey, error) {
	if strings.HasPrefix(strings.TrimSpace(path), signingKeyPrefix) {
		return nil, fmt.Errorf("%w: the signing key setting holds the key itself, not a file name: put it in a file (mode 0600) and give its path", ErrBadKey)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key file %s: %v", ErrBadKey, path, err)
	}
	if st.Mode().Perm()&0o077 != 0 && !allowInsecure {
		return nil, fmt.Errorf("%w: %s has mode %04o: run 'chmod 600 %s' (or pass --allow-insecure-identity)", ErrInsecureKey, path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path) // #nosec G304 -- a path the operator configured
	if err != nil {
		return nil, fmt.Errorf("%w: signing key file %s: %v", ErrBadKey, path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, signingKeyPrefix) {
			continue
		}
		seed, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(line, signingKeyPrefix))
		if err != nil || len(seed) != ed25519.SeedSize {
			break
		}
		return &SigningKey{seed: seed}, nil
	}
	return nil, fmt.Errorf("%w: signing key file %s does not parse (expected a key from 'walvault keygen --signing-key')", ErrBadKey, path)
}

// GenerateSigningKey writes a new signing key to path (mode 0600, never
// overwriting) and returns its verify key.
func GenerateSigningKey(path string) (VerifyKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return VerifyKey{}, err
	}
	vk := VerifyKey{pub: pub, ID: keyID(pub)}
	body := fmt.Sprintf("# walvault signing key, created %s: keep it on the database host only (mode 0600)\n# verify key: %s\n%s%s\n",
		time.Now().UTC().Format(time.RFC3339), vk, signingKeyPrefix, base64.RawURLEncoding.EncodeToString(priv.Seed()))
	return vk, writeNewKeyFile(path, body)
}

// writeNewKeyFile creates path with mode 0600, never overwriting, durably.
func writeNewKeyFile(path, body string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- a path the operator chose
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s already exists: walvault never overwrites a key (move it away first if you really mean to)", ErrBadKey, path)
		}
		return err
	}
	w := bufio.NewWriter(f)
	_, _ = w.WriteString(body)
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
