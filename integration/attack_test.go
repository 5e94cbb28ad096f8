package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/integration/pgtest"
)

// TestAttack plays the bucket writer of issue 9 against real encrypted,
// signed archives (a file:// store and an S3 server): it can write any
// object and knows the public recipient, but holds neither the identity
// nor the signing key. Each attack must end in a documented non-zero exit
// with nothing written outside DEST, no injected recovery setting, no
// file from wal-fetch, and memory bounded as the kernel measures it.
func TestAttack(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			a := newAttackVictim(t, kind)
			t.Run("control: the genuine archive reads", a.control)
			t.Run("readers need a verify key", a.needVerifyKey)
			t.Run("newline in a backup name", a.newlineName)
			t.Run("tablespace outside DEST", a.tablespaceOutside)
			t.Run("owner from the bucket", a.ownerFromBucket)
			t.Run("planted unencrypted segment", a.plantedSegment)
			t.Run("zstd bomb", a.zstdBomb)
			t.Run("512 MiB zstd window", a.zstdWindow)
			t.Run("300 MB backup_label", a.hugeLabel)
			t.Run("swapped WAL names", a.swappedWAL)
			t.Run("part of another backup", a.swappedPart)
			t.Run("replayed manifest", a.replayedManifest)
			t.Run("dropped proof", a.droppedProof)
			t.Run("escape sequences in backup-list", a.escapes)
			t.Run("unknown command or flag", a.unknownCommand)
			t.Run("secrets in endpoints", a.endpointSecrets)
			if kind == "file" {
				t.Run("symlink out of the store", a.symlinkOut)
			}
			// Issue 17: verify before use.
			t.Run("replaced dump runs nothing", a.replacedDump)
			t.Run("replaced segment body stops recovery", a.replacedSegmentBody)
			t.Run("forged part over a stopped data directory", a.forgedPartForce)
			t.Run("part that decodes to 32 GiB", a.bombPart)
			t.Run("another cluster's objects", a.otherCluster)
			t.Run("replayed mark record", a.replayedMark)
			t.Run("monitoring sees only authenticated objects", a.blindMonitoring)
			t.Run("password off argv", a.passwordOffArgv)
			if kind == "file" {
				t.Run("junk and a FIFO in the store", a.junkInFileStore)
			}
		})
	}
}

// attackVictim is a database host archiving to a store, and what the
// attacker finds there.
type attackVictim struct {
	kind       string
	tg         *target
	bucket     bucketWriter
	c          *pgtest.Cluster
	identity   string // the restore host's age identity (the attacker has not got it)
	signingKey string // the database host's (nor this)
	recipient  string // public: the attacker has it
	verifyKey  string // public
	backups    []string
	genuine    *repo.Manifest // of backups[1], as the attacker reads it
	segs       []string       // archived segments
	segSize    int64
	sysid      uint64
	forged     int // backups forged so far, for their names
}

// newAttackVictim sets up PostgreSQL 15 archiving through wal-push, signed
// and encrypted, with two base backups and a few more segments archived.
func newAttackVictim(t *testing.T, kind string) *attackVictim {
	began := time.Now()
	tg := newTarget(t, kind)
	v := &attackVictim{kind: kind, tg: tg}
	if kind == "file" {
		v.bucket = fileBucket{dir: strings.TrimPrefix(tg.URL, "file://")}
	} else {
		v.bucket = newS3Bucket(tg)
	}
	work := pgtest.WorkDir(t)
	v.identity, v.signingKey = filepath.Join(work, "restore.key"), filepath.Join(work, "signing.key")
	kg := runWalvault(t, tg, nil, "keygen", v.identity, "--signing-key", v.signingKey)
	lines := strings.Fields(kg.stdout)
	if kg.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "age1") || !strings.HasPrefix(lines[1], "walvault-verify-1-") {
		t.Fatalf("keygen --signing-key: %s", kg)
	}
	v.recipient, v.verifyKey = lines[0], lines[1]
	o, _ := pgtest.ServerOwner()
	if err := o.Chown(v.signingKey); err != nil { // archive_command runs as the server's user
		t.Fatal(err)
	}
	// Later entries win: this cluster's key, not the harness's.
	serverEnv := append([]string{"AWS_EC2_METADATA_DISABLED=true"}, tg.Env...)
	serverEnv = append(serverEnv, "WALVAULT_RECIPIENT="+v.recipient, "WALVAULT_SIGNING_KEY="+v.signingKey, "WALVAULT_VERIFY_KEY="+v.verifyKey)
	v.c = pgtest.New(t, pgtest.Options{Env: serverEnv, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", pgtest.Walvault(t)),
		"wal_keep_size = '1GB'",
	}})
	v.c.Start()
	v.c.Run("pgbench", "-i", "-s", "1", "-q")
	for range 2 {
		res := runWalvault(t, tg, v.writerEnv(), "backup-push", "--fast-checkpoint")
		if res.code != 0 {
			t.Fatalf("backup-push: %s", res)
		}
		v.backups = append(v.backups, backupName(t, res.stdout))
		v.c.Run("pgbench", "-n", "-t", "200")
		v.c.SwitchWAL() // a segment of its own between the backups
	}
	var last string
	for i := range 4 {
		v.c.Psql(fmt.Sprintf("CREATE TABLE t%d AS SELECT generate_series(1, 1000) AS i", i))
		last = v.c.SwitchWAL()
	}
	v.c.WaitArchived(last, 90*time.Second)
	v.segs = archivedSegments(t, v.c)
	if len(v.segs) < 6 {
		t.Fatalf("only %d segments archived", len(v.segs))
	}
	v.genuine = v.manifest(t, v.backups[1])
	v.segSize = v.genuine.SegmentSize
	var err error
	if v.sysid, err = strconv.ParseUint(v.genuine.SystemIdentifier, 10, 64); err != nil {
		t.Fatalf("system identifier %q: %v", v.genuine.SystemIdentifier, err)
	}
	t.Logf("%s: backups %v and segments up to %s archived, signed and encrypted, in %s", kind, v.backups, last, time.Since(began).Round(time.Millisecond))
	return v
}

// writerEnv is what the database host's walvault runs with.
func (v *attackVictim) writerEnv() []string {
	return append(v.c.PGEnv(), "WALVAULT_RECIPIENT="+v.recipient, "WALVAULT_SIGNING_KEY="+v.signingKey)
}

// keys are the restore host's settings: its identity and the verify key.
func (v *attackVictim) keys() []string {
	return []string{"--identity-file", v.identity, "--verify-key", v.verifyKey}
}

func (v *attackVictim) run(t *testing.T, args ...string) runResult {
	t.Helper()
	return runWalvault(t, v.tg, nil, args...)
}

// manifest reads a backup's manifest as the attacker can: it is plain JSON.
func (v *attackVictim) manifest(t *testing.T, name string) *repo.Manifest {
	t.Helper()
	body, _ := v.bucket.get(t, repo.BackupKey(name, repo.ManifestFile))
	m, err := repo.DecodeManifest(bytes.NewReader(body), false)
	if err != nil {
		t.Fatalf("the genuine manifest of %s: %v", name, err)
	}
	return m
}

// forgeBackup stores m as backup m.Name: its parts copied from backup
// from (so every part the manifest names is there), the manifest with its
// true digest and the proof of from's manifest. It is removed when the
// test ends.
func (v *attackVictim) forgeBackup(t *testing.T, from string, m *repo.Manifest, copyParts bool) {
	t.Helper()
	t.Cleanup(func() { v.bucket.removeAll(t, repo.BackupPrefix+m.Name+"/") })
	if copyParts {
		for _, p := range v.manifest(t, from).Parts {
			copyObject(t, v.bucket, repo.BackupKey(from, p.Name), repo.BackupKey(m.Name, p.Name))
		}
	}
	body, err := repo.EncodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	_, meta := v.bucket.get(t, repo.BackupKey(from, repo.ManifestFile))
	putBytes(t, v.bucket, repo.BackupKey(m.Name, repo.ManifestFile), body, objectMeta(body, meta))
}

// laterName is a new well-formed backup name, for a forged backup.
func (v *attackVictim) laterName() string {
	v.forged++
	return fmt.Sprintf("base_%d0101T000000Z_%s", 2100-v.forged, v.genuine.StartWAL)
}

// fetch runs wal-fetch into a fresh, empty directory and checks that a
// failure leaves it empty: no DEST, no temporary file beside it.
func (v *attackVictim) fetch(t *testing.T, name string, flags ...string) (runResult, string) {
	t.Helper()
	dir := pgtest.WorkDir(t)
	dest := filepath.Join(dir, "RECOVERYXLOG")
	args := append(append([]string{"wal-fetch", "--prefetch", "0"}, flags...), name, dest)
	res := v.run(t, args...)
	if res.code != 0 {
		emptyDir(t, "failed wal-fetch "+name, dir)
	}
	return res, dest
}

// restoreDest is a DEST that does not exist yet.
func restoreDest(t *testing.T) string { return filepath.Join(pgtest.WorkDir(t), "restored") }

// control: before any attack, the archive the attacks start from is read
// with exactly the flags they use.
func (v *attackVictim) control(t *testing.T) {
	res, dest := v.fetch(t, v.segs[2], v.keys()...)
	if res.code != 0 {
		t.Fatalf("wal-fetch of a genuine segment: %s", res)
	}
	if st, err := os.Stat(dest); err != nil || st.Size() != v.segSize {
		t.Fatalf("wal-fetch wrote %v, %v", st, err)
	}
	list := v.run(t, append([]string{"backup-list"}, v.keys()...)...)
	if list.code != 0 || !strings.Contains(list.stdout, v.backups[0]) || !strings.Contains(list.stdout, v.backups[1]) {
		t.Fatalf("backup-list: %s", list)
	}
}

// Whether to check proofs is the reader's setting, never the bucket's:
// without a verify key (and no --allow-unsigned) every reader refuses to
// start, before it reads anything.
func (v *attackVictim) needVerifyKey(t *testing.T) {
	dir := pgtest.WorkDir(t)
	id := []string{"--identity-file", v.identity}
	for _, args := range [][]string{
		append([]string{"wal-fetch", "--prefetch", "0", v.segs[1], filepath.Join(dir, "RECOVERYXLOG")}, id...),
		append([]string{"restore", filepath.Join(dir, "restored")}, id...),
		append([]string{"verify"}, id...),
		{"backup-list"},
		{"delete", "--retain-full", "1"},
		{"backup-mark", v.backups[0], "--permanent"},
	} {
		res := v.run(t, args...)
		if args[0] == "wal-fetch" {
			// restore_command: recovery stops rather than end there.
			res.exitIn(t, args[0]+" without a verify key", 255)
			continue
		}
		res.exitIn(t, args[0]+" without a verify key", 2)
	}
	emptyDir(t, "readers without a verify key", dir)
	if m := v.manifest(t, v.backups[0]); m.Permanent {
		t.Errorf("backup-mark without a verify key marked %s permanent", v.backups[0])
	}
}

// 1. A backup name with a newline and a setting in it: restore used to
// write it into postgresql.auto.conf, and the server ran the command. (No
// '/' in it: the folder name is the backup's name.)
func (v *attackVictim) newlineName(t *testing.T) {
	const pwned = "pwned-by-the-bucket"
	evil := v.genuine.Name + "\nrecovery_end_command = 'touch " + pwned + "'\n#"
	m := *v.genuine
	m.Name = evil
	m.StopTime = m.StopTime.Add(time.Hour) // the newest: what LATEST picks
	v.forgeBackup(t, v.backups[1], &m, true)

	injected := func(t *testing.T, dest string, res runResult) {
		t.Helper()
		for _, f := range []string{"postgresql.auto.conf", "recovery.conf"} {
			b, err := os.ReadFile(filepath.Join(dest, f))
			if err == nil && (bytes.Contains(b, []byte("recovery_end_command")) || bytes.Contains(b, []byte(pwned))) {
				t.Errorf("%s has the injected setting:\n%s", f, b)
			}
		}
		if strings.Contains(res.stdout+res.stderr, "\nrecovery_end_command") {
			t.Errorf("the output carries the injected line: %s", res)
		}
	}
	t.Run("by name", func(t *testing.T) {
		dest := restoreDest(t)
		res := v.run(t, append([]string{"restore", dest, "--backup", evil}, v.keys()...)...)
		res.exitIn(t, "restore --backup <name with a newline>", 2, 4)
		absent(t, "DEST", dest)
		injected(t, dest, res)
	})
	t.Run("as the latest", func(t *testing.T) {
		// Refusing, or restoring the newest genuine backup instead, are
		// both safe; restoring this one is not.
		dest := restoreDest(t)
		res := v.run(t, append([]string{"restore", dest}, v.keys()...)...)
		t.Logf("restore of LATEST: exit %d: %s", res.code, firstLine(res.stdout+res.stderr))
		if res.code == 0 {
			if !strings.Contains(res.stdout, "restored backup "+v.backups[1]+" ") {
				t.Errorf("restore of LATEST restored something else than the newest genuine backup: %s", res)
			}
		} else {
			res.exitIn(t, "restore of LATEST", 2, 4)
			absent(t, "DEST", dest)
		}
		injected(t, dest, res)
	})
}

// 2. A manifest that adds a tablespace outside DEST, whose one part is an
// unencrypted tar: restore used to write there (an authorized_keys), and
// with --force over an existing directory. Signed, the forgery fails its
// proof; each later case waives one more check, so that the rule that
// keeps DEST's restore inside DEST is tested on its own.
func (v *attackVictim) tablespaceOutside(t *testing.T) {
	forge := func(t *testing.T, oid uint32, outside string) string {
		t.Helper()
		m := *v.genuine
		m.Name = v.laterName()
		m.StopTime = m.StopTime.Add(time.Hour)
		content := []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBadKeyFromTheBucketWriter attacker\n")
		name := fmt.Sprintf("pg_tblspc/%d/authorized_keys", oid)
		if oid == 0 {
			name = "authorized_keys"
		}
		part := tarOf(t, name, content)
		crc, _ := crc32cOf(bytes.NewReader(content))
		pn := repo.PartName(len(m.Parts))
		m.Tablespaces = append(append([]repo.Tablespace(nil), m.Tablespaces...), repo.Tablespace{OID: oid, Name: "ssh", Location: outside})
		m.Parts = append(append([]repo.Part(nil), m.Parts...), repo.Part{Name: pn, Tablespace: oid, Files: 1,
			Size: int64(len(part)), StoredSize: int64(len(part)), SHA256: sha256Hex(part)})
		m.Files = append(append([]repo.File(nil), m.Files...), repo.File{Path: name, Part: len(m.Parts) - 1,
			Size: int64(len(content)), Mode: "0600", MTime: time.Unix(1700000000, 0).UTC(), CRC32C: crc})
		m.FileCount = len(m.Files)
		v.forgeBackup(t, v.backups[1], &m, true)
		putBytes(t, v.bucket, repo.BackupKey(m.Name, pn), part, nil)
		return m.Name
	}
	unsigned := []string{"--identity-file", v.identity, "--allow-unsigned"}
	waived := append(append([]string(nil), unsigned...), "--allow-unencrypted")
	cases := []struct {
		name     string
		oid      uint32
		flags    []string
		existing bool // the location exists, not empty, and --force is given
		codes    []int
	}{
		{"signed, absent location", 16999, v.keys(), false, []int{4}},
		{"signed, existing location, --force", 16999, v.keys(), true, []int{4}},
		{"unsigned allowed, absent location", 16999, unsigned, false, []int{2, 4}},
		{"unsigned and unencrypted allowed, absent location", 16999, waived, false, []int{0, 2, 4}},
		{"unsigned and unencrypted allowed, existing location, --force", 16999, waived, true, []int{0, 2, 4}},
		{"unsigned and unencrypted allowed, OID 0", 0, waived, false, []int{2, 4}},
		// The user names where the tablespace goes: only the unencrypted
		// part stands in the way now.
		{"unsigned allowed, --tablespace-map", 16999, append(append([]string(nil), unsigned...), "--tablespace-map", "ssh=MAPPED"), false, []int{4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			outside := filepath.Join(pgtest.WorkDir(t), "home-postgres-ssh")
			backup := forge(t, tc.oid, outside)
			mapped := filepath.Join(pgtest.WorkDir(t), "mapped")
			for i, f := range tc.flags {
				tc.flags[i] = strings.Replace(f, "MAPPED", mapped, 1)
			}
			orig := []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwnersOwnKey owner\n")
			keys := filepath.Join(outside, "authorized_keys")
			var before os.FileInfo
			if tc.existing {
				if err := os.Mkdir(outside, 0o750); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(keys, orig, 0o600); err != nil {
					t.Fatal(err)
				}
				before, _ = os.Stat(outside)
			}
			dest := restoreDest(t)
			args := append([]string{"restore", dest, "--backup", backup}, tc.flags...)
			if tc.existing {
				args = append(args, "--force")
			}
			res := v.run(t, args...)
			t.Logf("exit %d: %s", res.code, firstLine(res.stderr))
			res.exitIn(t, "restore of the forged backup", tc.codes...)
			if !tc.existing {
				absent(t, "the tablespace outside DEST", outside)
			} else {
				if got, _ := os.ReadFile(keys); !bytes.Equal(got, orig) {
					t.Errorf("authorized_keys outside DEST was overwritten: %q", got)
				}
				if _, names := regularBytes(outside); len(names) != 1 {
					t.Errorf("files appeared outside DEST: %v", names)
				}
				if after, err := os.Stat(outside); err != nil {
					t.Errorf("the existing directory outside DEST: %v", err)
				} else if after.Mode() != before.Mode() || ownerOf(after) != ownerOf(before) {
					t.Errorf("the existing directory outside DEST changed: %v %s, was %v %s", after.Mode(), ownerOf(after), before.Mode(), ownerOf(before))
				}
			}
			if res.code != 0 {
				notStartable(t, dest)
			}
			emptyDir(t, "the tablespace's mapped directory", mapped)
		})
	}
}

// ownerOf is a file's uid:gid.
func ownerOf(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	return "?"
}

// 2b. Run as root, restore handed the files to the owner the manifest
// names: the bucket decided who owns the restored data directory.
func (v *attackVictim) ownerFromBucket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("restore chowns only when run as root")
	}
	nobody := 65534
	m := *v.genuine
	m.Name = v.laterName()
	m.Owner = repo.FileOwner{User: "nobody", Group: "nogroup", UID: nobody, GID: nobody}
	v.forgeBackup(t, v.backups[1], &m, true)
	dest := restoreDest(t)
	res := v.run(t, "restore", dest, "--backup", m.Name, "--identity-file", v.identity, "--allow-unsigned")
	t.Logf("exit %d: %s", res.code, firstLine(res.stdout+res.stderr))
	res.exitIn(t, "restore --allow-unsigned of a manifest naming another owner", 0, 2, 4)
	var owned []string
	_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && ownerOf(fi) == fmt.Sprintf("%d:%d", nobody, nobody) {
			owned = append(owned, p)
		}
		return nil
	})
	if len(owned) > 0 {
		t.Errorf("%d restored files belong to the owner the bucket named (%s, ...)", len(owned), owned[0])
	}
}

// 3. An unencrypted, uncompressed segment planted under an archived name
// with a correct checksum in its metadata (and a genuine segment's proof):
// wal-fetch used to hand it to PostgreSQL.
func (v *attackVictim) plantedSegment(t *testing.T) {
	name := v.segs[1]
	key := repo.WALKey(archive.WALFile{Name: name, Kind: archive.KindSegment})
	seg := make([]byte, v.segSize)
	copy(seg, walPageHeader(t, name, v.segSize, v.sysid))
	copy(seg[8192:], "crafted WAL records would go here")
	_, meta := v.bucket.get(t, key)
	replaceFor(t, v.bucket, key, bytes.NewReader(seg), int64(len(seg)), objectMeta(seg, meta))

	res, _ := v.fetch(t, name, v.keys()...)
	res.exitIn(t, "wal-fetch of the planted segment", 255)
	res, _ = v.fetch(t, name, "--identity-file", v.identity, "--allow-unsigned")
	res.exitIn(t, "wal-fetch --allow-unsigned of the unencrypted segment (an identity is configured)", 255)
	// Control: only the two protections stand between it and PostgreSQL.
	res, dest := v.fetch(t, name, "--identity-file", v.identity, "--allow-unsigned", "--allow-unencrypted")
	if got, _ := os.ReadFile(dest); res.code != 0 || !bytes.Equal(got, seg) {
		t.Errorf("control: with both checks waived the planted segment should be served as it is: %s", res)
	}
}

// 4. A zstd bomb, encrypted to the public recipient, with the digest of
// its gigabyte but the size of a segment in its metadata, read with
// --allow-unsigned: the segment-size cap must hold while it streams.
func (v *attackVictim) zstdBomb(t *testing.T) {
	name := v.segs[2]
	key := repo.WALKey(archive.WALFile{Name: name, Kind: archive.KindSegment})
	head := walPageHeader(t, name, v.segSize, v.sysid)
	const total = 1 << 30
	bomb := ageEncrypt(t, v.recipient, zstdZeros(zstdWindow8MiB, head, total-int64(len(head))))
	if len(bomb) > 40<<10 {
		t.Fatalf("the bomb is %d bytes", len(bomb))
	}
	meta := forgedMeta(zerosDigest(head, total-int64(len(head))), v.segSize, nil)
	replaceFor(t, v.bucket, key, bytes.NewReader(bomb), int64(len(bomb)), meta)

	dir := pgtest.WorkDir(t)
	w := watchPeak(dir)
	res := v.run(t, "wal-fetch", "--prefetch", "0", "--identity-file", v.identity, "--allow-unsigned", name, filepath.Join(dir, name))
	peak := w.done()
	t.Logf("%d-byte bomb: %s; the directory peaked at %d bytes", len(bomb), strings.TrimSpace(res.stderr), peak)
	res.exitIn(t, "wal-fetch of the bomb", 255)
	emptyDir(t, "wal-fetch of the bomb", dir)
	if peak > v.segSize {
		t.Errorf("the temporary file grew to %d bytes, past the %d-byte segment size", peak, v.segSize)
	}
	if res.maxRSS > 100e6 {
		t.Errorf("wal-fetch of the bomb peaked at %d bytes RSS", res.maxRSS)
	}
}

// 5. A zstd frame declaring a 512 MiB window: the decoder must refuse it
// rather than size its history to it.
func (v *attackVictim) zstdWindow(t *testing.T) {
	t.Run("wal-fetch", func(t *testing.T) {
		name := v.segs[3]
		key := repo.WALKey(archive.WALFile{Name: name, Kind: archive.KindSegment})
		head := walPageHeader(t, name, v.segSize, v.sysid)
		zeros := v.segSize - int64(len(head))
		obj := ageEncrypt(t, v.recipient, zstdZeros(zstdWindow512MiB, head, zeros))
		replaceFor(t, v.bucket, key, bytes.NewReader(obj), int64(len(obj)), forgedMeta(zerosDigest(head, zeros), v.segSize, nil))
		res, _ := v.fetch(t, name, "--identity-file", v.identity, "--allow-unsigned")
		t.Logf("%s", strings.TrimSpace(res.stderr))
		res.exitIn(t, "wal-fetch of a 512 MiB-window frame", 255)
		if res.maxRSS > 100e6 {
			t.Errorf("wal-fetch peaked at %.0f MB RSS", float64(res.maxRSS)/1e6)
		}
	})
	t.Run("backup part", func(t *testing.T) {
		// A part has no segment-size cap: only the window limit keeps
		// the decoder from touching 256 MiB of history. The manifest is
		// unsigned (--allow-unsigned), the part encrypted as required.
		const body = 256 << 20
		file := "base/1/99999"
		head := tarHeaderBlock(t, file, body)
		zeros := int64(body + 1024) // the file, then the end-of-archive blocks
		part := ageEncrypt(t, v.recipient, zstdZeros(zstdWindow512MiB, head, zeros))
		crc, _ := crc32cOf(&patternReader{n: body})
		m := *v.genuine
		m.Name = v.laterName()
		m.Tablespaces, m.TablespaceMap = nil, ""
		m.Parts = []repo.Part{{Name: repo.PartName(0), Files: 1, Size: int64(len(head)) + zeros, StoredSize: int64(len(part)), SHA256: sha256Hex(part)}}
		m.Files = []repo.File{{Path: file, Part: 0, Size: body, Mode: "0600", MTime: time.Unix(1700000000, 0).UTC(), CRC32C: crc}}
		m.FileCount = 1
		v.forgeBackup(t, v.backups[1], &m, false)
		putBytes(t, v.bucket, repo.BackupKey(m.Name, m.Parts[0].Name), part, nil)
		res := v.run(t, "verify", "--backup", m.Name, "--full", "--identity-file", v.identity, "--allow-unsigned")
		t.Logf("verify: exit %d, peak RSS %.1f MB: %s", res.code, float64(res.maxRSS)/1e6, strings.TrimSpace(res.stdout+res.stderr))
		if res.code == 0 {
			t.Errorf("verify accepted a part whose frame declares a 512 MiB window: %s", res)
		}
		res.exitIn(t, "verify of the wide-window part", 4, 7)
		if res.maxRSS > 100e6 {
			t.Errorf("verify peaked at %.0f MB RSS", float64(res.maxRSS)/1e6)
		}
	})
}

// 6. A manifest with a 300 MB backup_label: backup-list used to reach
// 1.8 GB RSS. Streamed into the store, never held in the test's memory.
func (v *attackVictim) hugeLabel(t *testing.T) {
	const marker = "@@LABEL@@"
	m := *v.genuine
	m.Name = v.laterName()
	m.BackupLabel = marker
	m.Files, m.FileCount = nil, 0
	body, err := repo.EncodeManifest(&m)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(body, []byte(marker))
	gen := &patternReader{head: body[:i], tail: body[i+len(marker):], fill: 'A', n: 300e6}
	meta := forgedMeta(gen.digest(t), gen.size(), nil)
	key := repo.BackupKey(m.Name, repo.ManifestFile)
	t.Cleanup(func() { v.bucket.removeAll(t, repo.BackupPrefix+m.Name+"/") })
	v.bucket.put(t, key, gen, gen.size(), meta)

	for _, flags := range [][]string{{"--verify-key", v.verifyKey}, {"--allow-unsigned"}} {
		for _, format := range [][]string{nil, {"--json"}} {
			args := append(append([]string{"backup-list"}, flags...), format...)
			res := v.run(t, args...)
			t.Logf("%v: exit %d, peak RSS %.1f MB", args[1:], res.code, float64(res.maxRSS)/1e6)
			res.exitIn(t, strings.Join(args, " "), 4)
			if res.maxRSS > 200e6 {
				t.Errorf("%v peaked at %.0f MB RSS", args, float64(res.maxRSS)/1e6)
			}
			if len(res.stdout)+len(res.stderr) > 1<<20 {
				t.Errorf("%v printed %d bytes", args, len(res.stdout)+len(res.stderr))
			}
			if res.code == 0 && !strings.Contains(res.stdout, v.backups[1]) {
				t.Errorf("%v no longer lists the genuine backups: %s", args, res)
			}
			listedAsGood(t, res, m.Name)
		}
	}
}

// listedAsGood fails when backup-list shows name as a backup like any
// other: it must be left out, or marked as failing its checks.
func listedAsGood(t *testing.T, res runResult, name string) {
	t.Helper()
	if strings.HasPrefix(strings.TrimSpace(res.stdout), "[") {
		var list []map[string]any
		if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
			t.Errorf("backup-list --json: %v", err)
			return
		}
		for _, e := range list {
			if e["name"] == name && !marked(e) {
				t.Errorf("backup-list --json lists the forged backup %s as sound: %v", name, e)
			}
		}
		return
	}
	for _, line := range strings.Split(res.stdout, "\n") {
		if strings.Contains(line, name) && !markedLine(line) {
			t.Errorf("backup-list shows the forged backup as sound: %q", line)
		}
	}
}

// marked: a JSON entry carries an error or a failed status.
func marked(e map[string]any) bool {
	for k, val := range e {
		lk := strings.ToLower(k)
		if (strings.Contains(lk, "err") || strings.Contains(lk, "problem")) && val != nil && val != "" && val != false {
			return true
		}
		if (lk == "status" || lk == "state") && val != "ok" {
			return true
		}
		if (lk == "authenticated" || lk == "verified" || lk == "signed") && val == false {
			return true
		}
	}
	return false
}

func markedLine(line string) bool {
	l := strings.ToLower(line)
	for _, w := range []string{"fail", "invalid", "damaged", "unauthenticated", "not authentic", "proof", "unsigned", "error", "refused", "bad"} {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// 7. Object A's bytes and metadata, proof included, under B's name.
func (v *attackVictim) swappedWAL(t *testing.T) {
	a, b := v.segs[3], v.segs[4]
	ka := repo.WALKey(archive.WALFile{Name: a, Kind: archive.KindSegment})
	kb := repo.WALKey(archive.WALFile{Name: b, Kind: archive.KindSegment})
	body, meta := v.bucket.get(t, ka)
	replaceFor(t, v.bucket, kb, bytes.NewReader(body), int64(len(body)), meta)
	res, _ := v.fetch(t, b, v.keys()...)
	res.exitIn(t, "wal-fetch of a segment stored under another's name", 255)
}

// 8. Backup 1's first part replaced by backup 2's (with its metadata).
func (v *attackVictim) swappedPart(t *testing.T) {
	b1, b2 := v.backups[0], v.backups[1]
	m1 := v.manifest(t, b1)
	dest := restoreDest(t)
	if res := v.run(t, append([]string{"restore", dest, "--backup", b1}, v.keys()...)...); res.code != 0 {
		t.Fatalf("control: restore of the genuine backup: %s", res)
	}
	key := repo.BackupKey(b1, m1.Parts[0].Name)
	body, meta := v.bucket.get(t, repo.BackupKey(b2, m1.Parts[0].Name))
	replaceFor(t, v.bucket, key, bytes.NewReader(body), int64(len(body)), meta)
	dest = restoreDest(t)
	res := v.run(t, append([]string{"restore", dest, "--backup", b1}, v.keys()...)...)
	res.exitIn(t, "restore with another backup's part", 4)
	notStartable(t, dest)
}

// 9. An old manifest replayed under a new backup name, its parts beside
// it: as it is (the name inside disagrees), and renamed inside (only its
// proof, which binds the old key and content, disagrees).
func (v *attackVictim) replayedManifest(t *testing.T) {
	old := v.backups[0]
	t.Run("copied", func(t *testing.T) {
		name := v.laterName()
		t.Cleanup(func() { v.bucket.removeAll(t, repo.BackupPrefix+name+"/") })
		for _, p := range v.manifest(t, old).Parts {
			copyObject(t, v.bucket, repo.BackupKey(old, p.Name), repo.BackupKey(name, p.Name))
		}
		copyObject(t, v.bucket, repo.BackupKey(old, repo.ManifestFile), repo.BackupKey(name, repo.ManifestFile))
		v.refused(t, name)
	})
	t.Run("renamed inside", func(t *testing.T) {
		m := *v.manifest(t, old)
		m.Name = v.laterName()
		m.StopTime = m.StopTime.Add(24 * time.Hour)
		v.forgeBackup(t, old, &m, true)
		v.refused(t, m.Name)
	})
}

// refused: backup-list does not vouch for a forged backup, and restore of
// it fails with exit 4 before writing anything.
func (v *attackVictim) refused(t *testing.T, name string) {
	t.Helper()
	for _, format := range [][]string{nil, {"--json"}} {
		res := v.run(t, append(append([]string{"backup-list"}, v.keys()...), format...)...)
		res.exitIn(t, "backup-list", 4)
		listedAsGood(t, res, name)
	}
	dest := restoreDest(t)
	res := v.run(t, append([]string{"restore", dest, "--backup", name}, v.keys()...)...)
	res.exitIn(t, "restore of the replayed manifest", 4)
	absent(t, "DEST", dest)
}

// 10. A segment's metadata rewritten without its proof: refused, unless
// the user reads an archive from before signing with --allow-unsigned.
func (v *attackVictim) droppedProof(t *testing.T) {
	name := v.segs[5]
	key := repo.WALKey(archive.WALFile{Name: name, Kind: archive.KindSegment})
	res, dest := v.fetch(t, name, v.keys()...)
	want, err := os.ReadFile(dest)
	if res.code != 0 || err != nil {
		t.Fatalf("control: wal-fetch of the genuine segment: %s", res)
	}
	body, meta := v.bucket.get(t, key)
	replaceFor(t, v.bucket, key, bytes.NewReader(body), int64(len(body)), withoutProof(meta))
	res, _ = v.fetch(t, name, v.keys()...)
	res.exitIn(t, "wal-fetch of a segment without its proof", 255)
	res, dest = v.fetch(t, name, "--identity-file", v.identity, "--allow-unsigned")
	if got, _ := os.ReadFile(dest); res.code != 0 || !bytes.Equal(got, want) {
		t.Errorf("wal-fetch --allow-unsigned of an unsigned segment (an old archive): %s", res)
	}
}

// 11. Terminal escape sequences in what backup-list prints: a folder name
// (file:// only: S3's XML listings cannot carry ESC) and manifest fields.
func (v *attackVictim) escapes(t *testing.T) {
	const esc = "\x1b]0;owned\x07\x1b[2J\x1b[31m"
	m := *v.genuine
	m.Name = v.laterName()
	m.StartWAL, m.PGVersionString, m.Hostname = esc+m.StartWAL, esc, esc
	m.Annotations = map[string]string{esc: esc}
	v.forgeBackup(t, v.backups[1], &m, false)
	if v.kind == "file" {
		n := *v.genuine
		n.Name = "base_" + esc + "x"
		v.forgeBackup(t, v.backups[1], &n, false)
	}
	for _, flags := range [][]string{v.keys(), {"--allow-unsigned"}} {
		for _, format := range [][]string{nil, {"--json"}} {
			args := append(append([]string{"backup-list"}, flags...), format...)
			res := v.run(t, args...)
			res.exitIn(t, strings.Join(args, " "), 4)
			if strings.ContainsRune(res.stdout+res.stderr, 0x1b) {
				t.Errorf("%v printed an ESC byte: %q", args, res.stdout+res.stderr)
			}
		}
	}
}

// 12. A typo in a cron job must not look like success.
func (v *attackVictim) unknownCommand(t *testing.T) {
	for _, args := range [][]string{{"dump-psuh", "shop"}, {"wal-fetch", "--no-such-flag", "x", "y"}, {"backup-list", "--verify-keys", v.verifyKey}} {
		res := v.run(t, args...)
		want := 2
		if args[0] == "wal-fetch" {
			want = 255 // restore_command: recovery stops rather than end there
		}
		res.exitIn(t, strings.Join(args, " "), want)
	}
}

// 13. Credentials in endpoint settings must be refused or stripped before
// anything is written or printed.
func (v *attackVictim) endpointSecrets(t *testing.T) {
	const user, secret, sas = "AKIAWVATTACKTEST", "wvEndpointSecret-7Yq2", "sig=wvSasSecret-Lm4x"
	ep := "http://127.0.0.1:9"
	if v.tg.Server != nil {
		ep = v.tg.Server.Endpoint
	}
	withUser := strings.Replace(ep, "://", "://"+user+":"+secret+"@", 1)
	for _, flags := range [][]string{
		{"--s3-endpoint", withUser},
		{"--azure-endpoint", "https://acct.blob.core.windows.net/?sv=2022-11-02&" + sas},
	} {
		t.Run(flags[0], func(t *testing.T) {
			dest := restoreDest(t)
			res := v.run(t, append(append([]string{"restore", dest}, v.keys()...), flags...)...)
			t.Logf("exit %d: %s", res.code, strings.TrimSpace(res.stderr))
			if res.code != 0 {
				res.exitIn(t, "restore with a secret in an endpoint", 2)
			}
			out := res.stdout + res.stderr
			conf, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
			for _, s := range []string{secret, "wvSasSecret-Lm4x"} {
				if strings.Contains(out, s) {
					t.Errorf("the output contains %q: %s", s, out)
				}
				if bytes.Contains(conf, []byte(s)) {
					t.Errorf("postgresql.auto.conf contains %q:\n%s", s, conf)
				}
			}
		})
	}
}

// 14. The store's owner (postgres) links store/backups to a directory
// only root may write: a root backup-push must not follow it.
func (v *attackVictim) symlinkOut(t *testing.T) {
	store := strings.TrimPrefix(v.tg.URL, "file://")
	outside := filepath.Join(pgtest.WorkDir(t), "root-only")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(store, "backups")
	saved := filepath.Join(pgtest.WorkDir(t), "backups-saved")
	if err := os.Rename(backups, saved); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = os.Remove(backups)
		if err := os.Rename(saved, backups); err != nil {
			t.Fatal(err)
		}
	}()
	if err := os.Symlink(outside, backups); err != nil {
		t.Fatal(err)
	}
	res := runWalvault(t, v.tg, v.writerEnv(), "backup-push", "--fast-checkpoint", "--wal-archive-timeout", "30s")
	t.Logf("backup-push: exit %d: %s", res.code, strings.TrimSpace(res.stderr))
	if res.code == 0 {
		t.Errorf("backup-push through a symlink out of the store succeeded: %s", res)
	}
	res.exitIn(t, "backup-push through a symlink", 2, 3, 4, 9)
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("backup-push created %d entries in the root-only directory outside the store (%s, ...)", len(ents), ents[0].Name())
	}
}
