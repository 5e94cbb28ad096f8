package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrefetchedFallbackNote: a segment the prefetcher read from a
// fallback store is logged by the wal-fetch that serves it, once; a WAL
// object only, and nothing for a segment read from the store.
func TestPrefetchedFallbackNote(t *testing.T) {
	spool := t.TempDir()
	if err := os.Mkdir(filepath.Join(spool, "prefetch"), 0o700); err != nil {
		t.Fatal(err)
	}
	defer func() { fallbackHook = nil }()
	noteFallbackPrefetch(spool)
	const seg = "00000001000000000000002E"
	fallbackHook("wal/0000000100000000/"+seg, "wal/0000000100000000/"+seg+" from gs://dr/db (missing in file:///a)")
	fallbackHook("backups/base_1/part-00001", "backups/base_1/part-00001 from gs://dr/db (missing in file:///a)")
	ents, _ := os.ReadDir(filepath.Join(spool, "prefetch"))
	if len(ents) != 1 || ents[0].Name() != fallbackNotePrefix+seg {
		t.Fatalf("notes: %v", ents)
	}
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(old)
	logPrefetchedFallback(spool, "00000001000000000000002F")
	logPrefetchedFallback(spool, seg)
	logPrefetchedFallback(spool, seg)
	if got := buf.String(); strings.Count(got, "read from the fallback store") != 1 || !strings.Contains(got, seg+" from gs://dr/db (missing in file:///a)") {
		t.Fatalf("log: %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(spool, "prefetch")); len(ents) != 0 {
		t.Fatalf("the note was left: %v", ents)
	}
}
