package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

func TestShown(t *testing.T) {
	for in, want := range map[string]string{
		"base_20261129T211500Z":      "base_20261129T211500Z",
		"with space and ünïcode":     "with space and ünïcode",
		"":                           `""`,
		"evil\x1b]0;pwned\x07":       `"evil\x1b]0;pwned\a"`,
		"csi\u009b31m":               `"csi\u009b31m"`,
		"line\nrecovery_end_command": `"line\nrecovery_end_command"`,
		"bidi\u202eexe.txt":          `"bidi\u202eexe.txt"`,
		"bad\xffutf8":                `"bad\xffutf8"`,
		`"looks quoted"`:             `"\"looks quoted\""`,
		"del\x7f":                    `"del\x7f"`,
	} {
		if got := shown(in); got != want {
			t.Errorf("shown(%q) = %s, want %s", in, got, want)
		}
	}
}

// JSON output carries no terminal control: encoding/json escapes the C0
// controls, encodeJSON the rest (DEL, C1 such as CSI, format characters).
func TestEncodeJSONEscapesControls(t *testing.T) {
	v := map[string]string{"name": "a\x1b[31m\u009b31m\x7f\u202e\U000e0001\u2028z", "plain": "ünïcode ok"}
	var buf bytes.Buffer
	if err := encodeJSON(&buf, v); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x202e || r == 0xe0001 || r == 0x2028) {
			t.Fatalf("raw %U in JSON output %q", r, out)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back["name"] != v["name"] || back["plain"] != v["plain"] {
		t.Fatalf("does not read back: %v %q", err, back)
	}
	if !strings.Contains(out, "ünïcode ok") {
		t.Fatalf("printable text escaped: %s", out)
	}
}

// backup-list marks a backup whose manifest is damaged or fails
// authentication instead of hiding it, keeps it out of --json, warns on
// stderr and exits 4; no bucket text reaches the terminal raw. restore
// refuses such a backup by name (exit 4).
func TestBackupListMarksUntrustedBackups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := "file://" + filepath.Join(dir, "store")
	t.Setenv("WALVAULT_STORE", store)
	st, err := cloud.Open(ctx, store, cloud.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.LoadSigningKey(os.Getenv("WALVAULT_SIGNING_KEY"), false)
	if err != nil {
		t.Fatal(err)
	}
	signed := &repo.Repo{Store: st, Sign: sk, Cluster: "7300000000000000001"}
	m, err := repo.DecodeManifest(strings.NewReader(testManifest), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := signed.WriteManifest(ctx, m, true); err != nil {
		t.Fatal(err)
	}
	put := func(key string, body []byte) {
		t.Helper()
		if err := st.Put(ctx, key, cloud.Bytes(body), cloud.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	put("backups/base_1/part-00000", []byte("hello"))
	// A bucket writer's backups: unsigned, one under a name made of
	// terminal escapes; and one signed but damaged.
	forged := strings.Replace(testManifest, `"base_1"`, `"base_forged"`, 1)
	put("backups/base_forged/manifest.json", []byte(forged))
	evil := "evil\x1b]0;pwned\x07\x1b[2J"
	put("backups/"+evil+"/manifest.json", []byte(strings.Replace(testManifest, `"base_1"`, strconv.Quote(evil), 1)))
	junk := []byte("{not a manifest")
	sum := sha256.Sum256(junk)
	if err := signed.PutBytes(ctx, "backups/base_damaged/manifest.json", junk, cloud.PutOptions{Metadata: map[string]string{
		repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(junk))}}); err != nil {
		t.Fatal(err)
	}

	code, out, e := runCLI(t, "backup-list")
	if code != exitIntegrity {
		t.Fatalf("backup-list: exit %d, want %d\n%s\n%s", code, exitIntegrity, out, e)
	}
	if strings.ContainsAny(out+e, "\x1b\x07") {
		t.Fatalf("terminal escapes printed:\n%q\n%q", out, e)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			rows[f[0]] = l
		}
	}
	shownEvil := strconv.QuoteToGraphic(evil)
	for name, mark := range map[string]string{"base_forged": "UNAUTHENTICATED", shownEvil: "DAMAGED" /* not a name walvault writes: never read */, "base_damaged": "DAMAGED"} {
		if !strings.Contains(rows[name], mark) {
			t.Errorf("%s not marked %s:\n%s", name, mark, out)
		}
		if !strings.Contains(e, "warning: backup "+name+" is "+mark) {
			t.Errorf("no warning for %s:\n%s", name, e)
		}
	}
	if strings.Contains(rows["base_1"], "DAMAGED") || strings.Contains(rows["base_1"], "UNAUTHENTICATED") || !strings.Contains(rows["base_1"], "MISSING WAL") {
		t.Errorf("base_1: %q", rows["base_1"])
	}

	code, out, e = runCLI(t, "backup-list", "--json")
	var list []struct{ Name string }
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != exitIntegrity || len(list) != 1 || list[0].Name != "base_1" {
		t.Fatalf("backup-list --json: exit %d, %v\n%s\n%s", code, err, out, e)
	}
	if strings.ContainsAny(out+e, "\x1b\x07") || !strings.Contains(e, "UNAUTHENTICATED") {
		t.Fatalf("backup-list --json stderr:\n%q", e)
	}

	dest := filepath.Join(dir, "dest")
	code, _, e = runCLI(t, "restore", "--backup", "base_forged", dest)
	if code != exitIntegrity || !strings.Contains(e, "base_forged") {
		t.Fatalf("restore --backup base_forged: exit %d\n%s", code, e)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("DEST created")
	}
}

func TestGraphicOnly(t *testing.T) {
	for in, want := range map[string]string{
		"backup base_1 is damaged":       "backup base_1 is damaged",
		"name \x1b[2Jcleared":            `name \x1b[2Jcleared`,
		"bidi \u202etxt.exe":             `bidi \u202etxt.exe`,
		"csi \u009b31m":                  `csi \u009b31m`,
		"tab\tand newline\n are escaped": `tab\tand newline\n are escaped`,
	} {
		if got := graphicOnly(in); got != want {
			t.Errorf("graphicOnly(%q) = %q, want %q", in, got, want)
		}
	}
}
