package calendar

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var accepted = []string{
	"daily", "weekly", "Hourly", "semiannually",
	"*-*-* 02:00:00", "Mon..Sat 01:30", "Sat,Sun 03:00", "monday 02:00", "Mon..Wed,Fri *-*-* 04:15",
	"*-*-01 00:00:00", "2026-12-24 18:00", "12-24", "*-02~01 23:00", "*-*-1/2 01:00", "01:30", "*:0/15",
	"*-*-* 02:00:00 UTC", "Mon 02:00 Europe/Berlin", "*-*-* 23:59:59.5",
}

var refused = []string{
	"", "nightly at 1", "nightly", "every day", "25:00", "01:60", "*-13-01", "*-*-32 01:00", "Mon..Funday 01:00",
	"02:00 Mon", "*-*-* 02:00:00 at night", "1/0:00", "*-*-* 02:00:00:00", "daily 02:00",
}

// The parser, for machines without systemd.
func TestParse(t *testing.T) {
	for _, e := range accepted {
		if err := Parse(e); err != nil {
			t.Errorf("Parse(%q): %v", e, err)
		}
	}
	for _, e := range refused {
		if err := Parse(e); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", e, err)
		}
	}
}

// Check asks systemd-analyze where there is one: a stand-in here (so the
// test does not depend on systemd) that accepts what systemd accepts of
// two cases and records how it was called; without one, the parser.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\n" +
		"if [ \"$3\" = 'Mon..Sat 01:30' ]; then echo '  Original form: Mon..Sat 01:30'; exit 0; fi\n" +
		"echo \"Failed to parse calendar specification '$3': Invalid argument\" >&2; exit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "systemd-analyze"), []byte(script), 0o755); err != nil { // #nosec G306 -- a test's stand-in executable
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx := context.Background()
	if via, err := Check(ctx, "Mon..Sat 01:30"); err != nil || via != "systemd-analyze" {
		t.Fatalf("accepted by systemd-analyze: %s, %v", via, err)
	}
	via, err := Check(ctx, "nightly at 1")
	if !errors.Is(err, ErrInvalid) || via != "systemd-analyze" || !strings.Contains(err.Error(), "Failed to parse calendar specification") {
		t.Fatalf("refused by systemd-analyze: %s, %v", via, err)
	}
	calls, _ := os.ReadFile(log)
	if string(calls) != "calendar -- Mon..Sat 01:30\ncalendar -- nightly at 1\n" {
		t.Fatalf("systemd-analyze called as:\n%s", calls)
	}

	// No systemd-analyze anywhere: the parser decides.
	t.Setenv("PATH", t.TempDir())
	if via, err := Check(ctx, "Mon..Sat 01:30"); err != nil || via != "walvault's parser" {
		t.Fatalf("accepted by the parser: %s, %v", via, err)
	}
	if via, err := Check(ctx, "nightly at 1"); !errors.Is(err, ErrInvalid) || via != "walvault's parser" {
		t.Fatalf("refused by the parser: %s, %v", via, err)
	}
}

// Where systemd is installed, the parser agrees with it on every case
// above (the parser is what machines without systemd get).
func TestParserAgreesWithSystemd(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed here: TestParse and TestCheck stand without it")
	}
	for _, e := range append(append([]string{}, accepted...), refused...) {
		via, sysErr := Check(context.Background(), e)
		if via != "systemd-analyze" {
			t.Fatalf("%q checked with %s", e, via)
		}
		if (sysErr == nil) != (Parse(e) == nil) {
			t.Errorf("%q: systemd-analyze says %v, the parser %v", e, sysErr, Parse(e))
		}
	}
}
