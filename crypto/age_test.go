package crypto

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateLoadAndRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "id.txt")
	recipient, err := Generate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if _, err := Generate(path); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "never overwrites") {
		t.Fatalf("second Generate: %v", err)
	}
	recips, err := ParseRecipients([]string{recipient})
	if err != nil || len(recips) != 1 {
		t.Fatalf("ParseRecipients(%q) = %v, %v", recipient, recips, err)
	}
	ids, err := LoadIdentities(path, false)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := Encrypt(&buf, recips)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("hello wal"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !IsEncrypted(buf.Bytes()) {
		t.Fatal("no age header")
	}
	r, err := Decrypt(bytes.NewReader(buf.Bytes()), ids)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != "hello wal" {
		t.Fatalf("round trip gave %q", got)
	}
	// Another key cannot decrypt, and says so.
	other := filepath.Join(dir, "other.txt")
	if _, err := Generate(other); err != nil {
		t.Fatal(err)
	}
	otherIDs, _ := LoadIdentities(other, false)
	if _, err := Decrypt(bytes.NewReader(buf.Bytes()), otherIDs); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := Decrypt(bytes.NewReader(buf.Bytes()), nil); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("no key: %v", err)
	}
}

func TestLoadIdentitiesRefusesLoosePermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id.txt")
	if _, err := Generate(path); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		_ = os.Chmod(path, mode)
		if _, err := LoadIdentities(path, false); !errors.Is(err, ErrInsecureKey) || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %o: %v", mode, err)
		}
		if _, err := LoadIdentities(path, true); err != nil {
			t.Fatalf("mode %o with the override: %v", mode, err)
		}
	}
}

func TestParseRecipientsInputs(t *testing.T) {
	dir := t.TempDir()
	id := filepath.Join(dir, "id.txt")
	r1, _ := Generate(id)
	r2, _ := Generate(filepath.Join(dir, "id2.txt"))
	file := filepath.Join(dir, "recipients.txt")
	_ = os.WriteFile(file, []byte("# ops team\n"+r1+"\n"+r2+"\n"), 0o644)
	tests := []struct {
		specs []string
		n     int
		bad   bool
	}{
		{[]string{r1}, 1, false},
		{[]string{r1 + "," + r2}, 2, false},
		{[]string{r1, r2}, 2, false},
		{[]string{file}, 2, false},
		{[]string{""}, 0, false},
		{[]string{"age1notakey"}, 0, true},
		{[]string{filepath.Join(dir, "missing.txt")}, 0, true},
		{[]string{id}, 0, true}, // an identity file is not a recipients file
	}
	for _, tt := range tests {
		got, err := ParseRecipients(tt.specs)
		if tt.bad {
			if !errors.Is(err, ErrBadKey) {
				t.Errorf("%q: err %v, want ErrBadKey", tt.specs, err)
			}
			continue
		}
		if err != nil || len(got) != tt.n {
			t.Errorf("%q: %d recipients, %v; want %d", tt.specs, len(got), err, tt.n)
		}
	}
}
