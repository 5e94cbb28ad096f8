package crypto

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSigningKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sign.key")
	vk, err := GenerateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if _, err := GenerateSigningKey(path); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "never overwrites") {
		t.Fatalf("second GenerateSigningKey: %v", err)
	}
	sk, err := LoadSigningKey(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if sk.Verify().String() != vk.String() || sk.ID() != vk.ID {
		t.Fatalf("loaded key verifies as %s, generated %s", sk.Verify(), vk)
	}
	keys, err := ParseVerifyKeys([]string{vk.String()})
	if err != nil || len(keys) != 1 {
		t.Fatalf("ParseVerifyKeys: %v, %v", keys, err)
	}
	msg := []byte("walvault object")
	sig := sk.Sign(msg)
	if err := Check(keys, sk.ID(), msg, sig); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	if err := Check(keys, sk.ID(), []byte("walvault objecT"), sig); !errors.Is(err, ErrBadProof) {
		t.Fatalf("another message: %v", err)
	}
	if err := Check(keys, "0011223344556677", msg, sig); !errors.Is(err, ErrBadProof) || !strings.Contains(err.Error(), "not among") {
		t.Fatalf("another signer: %v", err)
	}
	// A second key (rotation): each verifies its own objects only.
	other, err := GenerateSigningKey(filepath.Join(dir, "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "verify.keys")
	if err := os.WriteFile(file, []byte("# old and new\n"+vk.String()+"\n"+other.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err = ParseVerifyKeys([]string{file})
	if err != nil || len(keys) != 2 {
		t.Fatalf("verify key file: %v, %v", keys, err)
	}
	if err := Check(keys, sk.ID(), msg, sig); err != nil {
		t.Fatalf("with two keys: %v", err)
	}
}

func TestSigningKeyMistakes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sign.key")
	if _, err := GenerateSigningKey(path); err != nil {
		t.Fatal(err)
	}
	secret, _ := os.ReadFile(path)
	line := ""
	for _, l := range strings.Split(string(secret), "\n") {
		if strings.HasPrefix(l, signingKeyPrefix) {
			line = l
		}
	}
	tests := []struct {
		name string
		err  error
	}{
		{"signing key given as verify key", func() error { _, err := ParseVerifyKeys([]string{line}); return err }()},
		{"truncated verify key", func() error { _, err := ParseVerifyKeys([]string{verifyKeyPrefix + "abc"}); return err }()},
		{"missing verify key file", func() error { _, err := ParseVerifyKeys([]string{filepath.Join(dir, "nope")}); return err }()},
		{"key text as signing key file", func() error { _, err := LoadSigningKey(line, false); return err }()},
		{"not a signing key", func() error {
			p := filepath.Join(dir, "junk")
			_ = os.WriteFile(p, []byte("hello\n"), 0o600)
			_, err := LoadSigningKey(p, false)
			return err
		}()},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrBadKey) {
			t.Errorf("%s: %v, want ErrBadKey", tt.name, tt.err)
		}
		if tt.err != nil && strings.Contains(tt.err.Error(), strings.TrimPrefix(line, signingKeyPrefix)) {
			t.Errorf("%s: the error echoes the secret: %v", tt.name, tt.err)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigningKey(path, false); !errors.Is(err, ErrInsecureKey) {
		t.Fatalf("a world-readable signing key: %v", err)
	}
	if _, err := LoadSigningKey(path, true); err != nil {
		t.Fatalf("allowed insecure: %v", err)
	}
}

// The proof costs one signature per object on the database host and one
// check per object on restore: next to hashing a 16 MiB segment
// (about 10 ms), what do they add?
func BenchmarkProof(b *testing.B) {
	path := filepath.Join(b.TempDir(), "sign.key")
	vk, err := GenerateSigningKey(path)
	if err != nil {
		b.Fatal(err)
	}
	sk, err := LoadSigningKey(path, false)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("walvault-object-proof-v1\nwal/0000000100000000/000000010000000000000001\n" + strings.Repeat("ab", 32) + "\n16777216\n")
	sig := sk.Sign(msg)
	keys := []VerifyKey{vk}
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			sk.Sign(msg)
		}
	})
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := Check(keys, sk.ID(), msg, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The yardstick, in the same run: the content hash every segment gets.
	segment := make([]byte, 16<<20)
	b.Run("sha256-16MiB", func(b *testing.B) {
		b.SetBytes(int64(len(segment)))
		for b.Loop() {
			sha256.Sum256(segment)
		}
	})
}
