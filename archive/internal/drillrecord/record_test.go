package drillrecord

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "drill.json")
	if st, err := Load(path, "file:///a"); st != nil || err != nil {
		t.Fatalf("no file: %v, %v", st, err)
	}
	t0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	ok := Outcome{Backup: "b1", Finished: t0, Success: true, Checks: []Check{{Name: "restore", Result: OK}}}
	if _, err := Save(path, "file:///a", ok); err != nil {
		t.Fatal(err)
	}
	failed := Outcome{Backup: "b2", Finished: t0.Add(time.Hour), Reason: "sql in database shop: too few orders"}
	st, err := Save(path, "file:///a", failed)
	if err != nil {
		t.Fatal(err)
	}
	if st.Last.Backup != "b2" || st.LastSuccess == nil || st.LastSuccess.Backup != "b1" {
		t.Errorf("after a failure: last %+v, last success %+v", st.Last, st.LastSuccess)
	}
	if _, err := Save(path, "s3://other/p", ok); err != nil {
		t.Fatal(err)
	}
	a, err := Load(path, "file:///a")
	if err != nil || a.Last.Backup != "b2" || a.LastSuccess.Backup != "b1" || !a.LastSuccess.Finished.Equal(t0) {
		t.Errorf("store a after another store's drill: %+v, %v", a, err)
	}
	if b, _ := Load(path, "s3://other/p"); b == nil || b.Last.Backup != "b1" {
		t.Errorf("store b: %+v", b)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the record's mode: %v, %v", fi.Mode(), err)
	}
}

func TestDamagedRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drill.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, "x"); err == nil || !strings.Contains(err.Error(), "not a walvault drill record") {
		t.Errorf("Load of a damaged file: %v", err)
	}
	if _, err := Save(path, "x", Outcome{Backup: "b", Success: true}); err != nil {
		t.Fatalf("Save over a damaged file: %v", err)
	}
	if st, err := Load(path, "x"); err != nil || st.LastSuccess == nil {
		t.Errorf("after Save: %+v, %v", st, err)
	}
}

func TestTrimChecks(t *testing.T) {
	var cs []Check
	for i := 0; i < maxChecks+50; i++ {
		cs = append(cs, Check{Name: "catalog", Result: OK})
	}
	cs = append(cs, Check{Name: "sql", Result: Fail})
	got := trimChecks(cs)
	if len(got) != maxChecks || got[0].Result != Fail {
		t.Errorf("trimmed to %d, first %+v", len(got), got[0])
	}
}

func TestTextfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drill.prom")
	t0 := time.Unix(1764558000, 0)
	st := &Store{
		Last:        &Outcome{Backup: "b2", Finished: t0.Add(time.Hour), DurationSeconds: 42, RestoredBytes: 0},
		LastSuccess: &Outcome{Backup: "b1", Finished: t0, DurationSeconds: 40, RestoredBytes: 1000, Success: true},
	}
	if err := WriteTextfile(path, "file:///a", st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		`walvault_drill_last_success_timestamp_seconds{backup="b1",store="file:///a"} 1.764558e+09`,
		`walvault_drill_last_timestamp_seconds{backup="b2",store="file:///a"} 1.7645616e+09`,
		`walvault_drill_success{backup="b2",store="file:///a"} 0`,
		`walvault_drill_duration_seconds{backup="b2",store="file:///a"} 42`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "restored_bytes") {
		t.Errorf("restored bytes of a drill that restored nothing:\n%s", text)
	}
	if err := WriteTextfile(path, "file:///a", nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "walvault_drill") {
		t.Errorf("gauges without a record:\n%s", b)
	}
}
