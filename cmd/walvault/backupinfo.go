//go:build !walvault_front

package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
)

// infoEntry is backup-info --json: backup-list's entry and the rest.
type infoEntry struct {
	listEntry
	PGVersionString string `json:"pg_version_string,omitempty"`
	Hostname        string `json:"hostname,omitempty"`
	PGData          string `json:"pgdata"`
	BlockSize       int    `json:"block_size,omitempty"`
	DataChecksums   string `json:"data_checksums,omitempty"`
	// DurationSeconds is from the backup's start to its stop (the
	// checkpoint included); ChainStored what restoring it reads.
	DurationSeconds float64       `json:"duration_seconds"`
	FileCount       int           `json:"file_count"`
	PartCount       int           `json:"part_count"`
	Databases       []infoDB      `json:"databases"`
	SharedSize      int64         `json:"shared_size"` // global/: the shared catalogs
	Tablespaces     []infoSpc     `json:"tablespaces"`
	PITR            *infoPITR     `json:"pitr_window"`
	Chain           []infoChainOf `json:"chain_backups"`
}

type infoDB struct {
	OID  uint32 `json:"oid"`
	Name string `json:"name,omitempty"` // "" when the manifest predates names
	Size int64  `json:"size"`
}

type infoSpc struct {
	repo.Tablespace
	Size int64 `json:"size"`
}

// infoPITR is the window a restore from this backup covers: from its end
// (when it can be made consistent) to about when the last segment
// reachable from it without a gap was stored.
type infoPITR struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Segment string    `json:"end_segment"`
}

// infoChainOf is one link of an incremental's chain.
type infoChainOf struct {
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	StopTime   time.Time `json:"stop_time"`
	StoredSize int64     `json:"stored_size"`
}

func backupInfo(c *cli.Context) error {
	if err := wantArgs(c, 1, "the backup's name (walvault backup-list shows them)"); err != nil {
		return err
	}
	return showBackup(c, c.Args().First())
}

// showBackup is backup-info NAME (and backup-list --detail NAME).
func showBackup(c *cli.Context, name string) error {
	if !repo.ValidBackupName(name) {
		return usageError("%q is not a backup name (walvault backup-list shows them)", name)
	}
	r, err := openArchive(c, reads)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	cat, err := r.LoadCatalog(c.Context, repo.CatalogOptions{WAL: repo.WALOfBackups})
	if err != nil {
		return err
	}
	var summary *repo.Manifest
	for _, m := range cat.Backups() {
		if m.Name == name {
			summary = m
		}
	}
	if summary == nil {
		for _, b := range cat.Damaged() {
			if b.Name == name {
				return fmt.Errorf("%w: backup %s is %s and cannot be restored: %s", repo.DamagedKind([]repo.Damaged{b}), name, b.Mark, shown(oneLine(b.Err.Error())))
			}
		}
		return fmt.Errorf("%w: no complete backup named %s in %s: walvault backup-list shows them", archive.ErrBadInput, name, r.Store)
	}
	m, err := r.ReadManifest(c.Context, name, false)
	if err != nil {
		return err
	}
	e := infoOf(cat, summary, m)
	if c.Bool("json") {
		return encodeJSON(c.App.Writer, e)
	}
	printInfo(c.App.Writer, e)
	return nil
}

// infoOf gathers backup-info's figures: m is the whole manifest, summary
// the catalog's (which knows the chain's stored size).
func infoOf(cat *repo.Catalog, summary, m *repo.Manifest) *infoEntry {
	wal := cat.WAL(m.SegmentSize).Range(m)
	e := &infoEntry{
		listEntry: listEntry{Name: m.Name, StartTime: m.StartTime, StopTime: m.StopTime, Timeline: m.Timeline,
			StartLSN: m.StartLSN.String(), StopLSN: m.StopLSN.String(), StartWAL: m.StartWAL, StopWAL: m.StopWAL, PGVersion: m.PGVersion,
			SystemIdentifier: m.SystemIdentifier, DataSize: m.DataSize, StoredSize: m.StoredSize, Compression: m.Compression,
			Encrypted: m.Encrypted, Permanent: m.Permanent, Annotations: m.Annotations, WAL: wal, FromStandby: m.FromStandby,
			Type: repo.BackupFull, Parent: m.Parent, Chain: append([]string{}, m.Chain...), ChainStoredSize: cat.ChainStoredSize(summary)},
		PGVersionString: m.PGVersionString, Hostname: m.Hostname, PGData: m.PGData, BlockSize: m.BlockSize, DataChecksums: m.DataChecksums,
		DurationSeconds: m.StopTime.Sub(m.StartTime).Seconds(), FileCount: m.FileCount, PartCount: len(m.Parts),
		Databases: []infoDB{}, Tablespaces: []infoSpc{}, Chain: []infoChainOf{},
	}
	if m.Incremental() {
		e.Type = repo.BackupIncremental
	}
	if wal.Restorable {
		e.PITR = &infoPITR{Start: m.StopTime, End: wal.LastTime, Segment: wal.Last}
	}
	names := map[uint32]string{}
	for _, d := range m.Databases {
		names[d.OID] = d.Name
	}
	dbs := map[uint32]int64{}
	spcs := map[uint32]int64{}
	for _, f := range m.Files {
		if f.Type != repo.TypeFile {
			continue
		}
		parts := strings.Split(f.Path, "/")
		switch {
		case len(parts) >= 3 && parts[0] == "base":
			if oid, err := strconv.ParseUint(parts[1], 10, 32); err == nil {
				dbs[uint32(oid)] += f.Size
			}
		case len(parts) >= 2 && parts[0] == "global":
			e.SharedSize += f.Size
		case len(parts) >= 5 && parts[0] == "pg_tblspc":
			spc, err1 := strconv.ParseUint(parts[1], 10, 32)
			db, err2 := strconv.ParseUint(parts[3], 10, 32)
			if err1 == nil && err2 == nil {
				spcs[uint32(spc)] += f.Size
				dbs[uint32(db)] += f.Size
			}
		}
	}
	for oid, size := range dbs {
		e.Databases = append(e.Databases, infoDB{OID: oid, Name: names[oid], Size: size})
	}
	sort.Slice(e.Databases, func(i, j int) bool { return e.Databases[i].OID < e.Databases[j].OID })
	for _, t := range m.Tablespaces {
		e.Tablespaces = append(e.Tablespaces, infoSpc{Tablespace: t, Size: spcs[t.OID]})
	}
	byName := map[string]*repo.Manifest{}
	for _, b := range cat.Backups() {
		byName[b.Name] = b
	}
	for _, n := range m.Chain {
		link := infoChainOf{Name: n, Type: repo.BackupFull}
		if b := byName[n]; b != nil {
			link.StopTime, link.StoredSize = b.StopTime, b.StoredSize
			if b.Incremental() {
				link.Type = repo.BackupIncremental
			}
		}
		e.Chain = append(e.Chain, link)
	}
	return e
}

// printInfo prints backup-info's text: one "what  value" line each.
func printInfo(w io.Writer, e *infoEntry) {
	stamp := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "%-13s %s\n", k, fmt.Sprintf(format, a...)) }
	line("backup", "%s", shown(e.Name))
	line("type", "%s", e.Type)
	if e.Type == repo.BackupIncremental {
		line("parent", "%s", shown(e.Parent))
		for i, l := range e.Chain {
			k := ""
			if i == 0 {
				k = "chain"
			}
			line(k, "%s (%s, finished %s, %s stored)", shown(l.Name), l.Type, stamp(l.StopTime), archive.HumanBytes(l.StoredSize))
		}
	}
	flags := []string{}
	if e.Permanent {
		flags = append(flags, "permanent (retention keeps it)")
	}
	if e.Encrypted {
		flags = append(flags, "encrypted")
	}
	if len(flags) > 0 {
		line("flags", "%s", strings.Join(flags, ", "))
	}
	version := pgVersion(e.PGVersion)
	if e.PGVersionString != "" {
		version = shown(e.PGVersionString)
	}
	line("PostgreSQL", "%s, system identifier %s, timeline %d", version, shown(e.SystemIdentifier), e.Timeline)
	if e.BlockSize > 0 || e.DataChecksums != "" {
		line("", "block size %d, data checksums %s", e.BlockSize, orDash(shown(e.DataChecksums)))
	}
	if e.FromStandby {
		line("taken on", "a standby: %s, data directory %s", orDash(shown(e.Hostname)), shown(e.PGData))
	} else if e.Hostname != "" {
		line("taken on", "%s, data directory %s", shown(e.Hostname), shown(e.PGData))
	} else {
		line("taken on", "data directory %s", shown(e.PGData))
	}
	line("started", "%s at %s (WAL %s)", stamp(e.StartTime), e.StartLSN, shown(e.StartWAL))
	line("finished", "%s at %s (WAL %s), %s after it started", stamp(e.StopTime), e.StopLSN, shown(e.StopWAL),
		time.Duration(e.DurationSeconds*float64(time.Second)).Round(10*time.Millisecond))
	wal := "MISSING: no WAL from " + shown(e.StartWAL) + " in the store: the backup cannot be restored"
	if e.WAL.Last != "" {
		wal = shown(e.WAL.First) + " - " + shown(e.WAL.Last)
		if !e.WAL.Restorable {
			wal += " (INCOMPLETE: the backup needs " + shown(e.StopWAL) + " to be consistent)"
		}
	}
	line("WAL", "%s", wal)
	if p := e.PITR; p != nil {
		line("PITR window", "%s to about %s (end of %s, when it was stored)", stamp(p.Start), stamp(p.End), shown(p.Segment))
	} else {
		line("PITR window", "none: the backup cannot be made consistent from the archived WAL")
	}
	line("size", "%s in %d files; stored %s in %d parts (%s%s)", archive.HumanBytes(e.DataSize), e.FileCount, archive.HumanBytes(e.StoredSize), e.PartCount,
		orDash(shown(e.Compression)), map[bool]string{true: ", encrypted", false: ""}[e.Encrypted])
	if e.Type == repo.BackupIncremental {
		line("", "restoring it reads %s (with its chain)", archive.HumanBytes(e.ChainStoredSize))
	}
	for i, d := range e.Databases {
		k := ""
		if i == 0 {
			k = "databases"
		}
		name := "(name not recorded)"
		if d.Name != "" {
			name = shown(d.Name)
		}
		line(k, "%-24s OID %-10d %s", name, d.OID, archive.HumanBytes(d.Size))
	}
	if e.SharedSize > 0 {
		line("", "%-24s %-14s %s", "(shared catalogs)", "global/", archive.HumanBytes(e.SharedSize))
	}
	for i, t := range e.Tablespaces {
		k := ""
		if i == 0 {
			k = "tablespaces"
		}
		line(k, "%s (OID %d) at %s, %s", orDash(shown(t.Name)), t.OID, shown(t.Location), archive.HumanBytes(t.Size))
	}
	keys := make([]string, 0, len(e.Annotations))
	for k := range e.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		label := ""
		if i == 0 {
			label = "annotations"
		}
		line(label, "%s=%s", shown(k), shown(e.Annotations[k]))
	}
}
