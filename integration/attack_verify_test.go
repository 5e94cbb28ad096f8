package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
	"github.com/walvault/walvault/integration/pgtest"
)

// Issue 17's attacks: no byte from the bucket acts before it is
// authenticated, and an integrity failure is never taken for the end of
// the archive. The attacker writes to the bucket and holds the public
// recipient and the verify key; a second cluster of the same owner shares
// the signing key (the cross-cluster cases use it, as that host would).

// hostileDump is a genuine pg_dump -Fc archive of a database whose table
// has a CHECK constraint that runs a shell command when a row is loaded:
// restored, it touches marker as the server's user.
func (v *attackVictim) hostileDump(t *testing.T, marker string) []byte {
	t.Helper()
	db := fmt.Sprintf("evil%d", time.Now().UnixNano()%1e6)
	v.c.Psql("CREATE DATABASE " + db)
	t.Cleanup(func() { _, _ = v.c.TryPsql("DROP DATABASE IF EXISTS " + db) })
	evil := v.c.ConnString(db)
	sql := fmt.Sprintf(`CREATE FUNCTION evil(int) RETURNS bool LANGUAGE plpgsql AS $f$
BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch %s'''; RETURN true; END $f$;
CREATE TABLE shop_orders (i int);
INSERT INTO shop_orders VALUES (1);
ALTER TABLE shop_orders ADD CONSTRAINT pwn CHECK (evil(i));`, marker)
	out, err := exec.Command(filepath.Join(v.c.Bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", evil, "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("making the hostile database: %v\n%s", err, out)
	}
	_ = os.Remove(marker) // the constraint ran once, when it was added
	dump, err := exec.Command(filepath.Join(v.c.Bin, "pg_dump"), "-Fc", "-d", evil).Output()
	if err != nil {
		t.Fatalf("pg_dump of the hostile database: %v", err)
	}
	return dump
}

// 12. A dump replaced by an ordinary pg_dump archive, encrypted to the
// public recipient, whose table's CHECK constraint runs a shell command
// as the server's user: pg_restore never reads a byte of it, for every
// --jobs, and nothing runs.
func (v *attackVictim) replacedDump(t *testing.T) {
	res := runWalvault(t, v.tg, v.writerEnv(), "dump-push", "postgres")
	if res.code != 0 {
		t.Fatalf("dump-push: %s", res)
	}
	name := strings.Fields(res.stdout)[1]
	marker := filepath.Join(pgtest.WorkDir(t), "pwned-by-a-dump")
	o, _ := pgtest.ServerOwner()
	_ = o.Chown(filepath.Dir(marker))
	forged := ageEncrypt(t, v.recipient, v.hostileDump(t, marker))
	key := repo.DumpKey(name, repo.DumpFile)
	replaceFor(t, v.bucket, key, bytes.NewReader(forged), int64(len(forged)), nil)
	for _, jobs := range []string{"1", "2"} {
		target := "restored_" + jobs
		v.c.Psql("CREATE DATABASE " + target)
		res := v.run(t, append([]string{"dump-restore", name, "--dbname", v.c.ConnString(target), "--database", "postgres",
			"--jobs", jobs, "--temp-dir", pgtest.WorkDir(t)}, v.keys()...)...)
		res.exitIn(t, "dump-restore --jobs "+jobs+" of a replaced dump", 4)
		absent(t, "the hostile dump's marker (a command ran on the server)", marker)
		if n := v.c.Run("psql", "-XAt", "-d", v.c.ConnString(target), "-c", "SELECT count(*) FROM pg_class WHERE relname = 'shop_orders'"); strings.TrimSpace(n) != "0" {
			t.Errorf("--jobs %s: pg_restore restored part of the replaced dump", jobs)
		}
	}
	// A dump of another database: LATEST for a database without dumps
	// finds none, and a named dump goes into another database's name only
	// when the user says whose dump it is.
	res = v.run(t, append([]string{"dump-restore", "LATEST", "--dbname", v.c.ConnString("restored_1")}, v.keys()...)...)
	res.exitIn(t, "dump-restore LATEST into a database without dumps", 1)
	res = v.run(t, append([]string{"dump-restore", name, "--dbname", v.c.ConnString("restored_1")}, v.keys()...)...)
	res.exitIn(t, "dump-restore of postgres's dump into restored_1", 2)
	if !strings.Contains(res.stderr, "--database postgres") {
		t.Errorf("the refusal does not say how: %s", res.stderr)
	}
}

// 13. A segment's body replaced, its signed metadata kept (the proof signs
// the metadata, not the bytes in the store): verify without --full and
// restore's up-front check cannot see it; verify --full does, and during
// replay wal-fetch exits 255, so PostgreSQL stops recovery with FATAL
// instead of taking the segment for the end of the archive and promoting
// without the rows written after it.
func (v *attackVictim) replacedSegmentBody(t *testing.T) {
	// A segment past the newest backup's stop: its rows are lost if
	// recovery ends before it.
	stop, err := archive.ParseWALName(v.genuine.StopWAL)
	if err != nil {
		t.Fatal(err)
	}
	var victim, donor string
	for _, s := range v.segs {
		if w, err := archive.ParseWALName(s); err == nil && w.SegNo(v.segSize) > stop.SegNo(v.segSize) {
			if victim == "" {
				victim = s
			} else if donor == "" {
				donor = s
			}
		}
	}
	if victim == "" || donor == "" {
		t.Fatalf("no two segments after %s among %v", v.genuine.StopWAL, v.segs)
	}
	kv := repo.WALKey(archive.WALFile{Name: victim, Kind: archive.KindSegment})
	kd := repo.WALKey(archive.WALFile{Name: donor, Kind: archive.KindSegment})
	_, meta := v.bucket.get(t, kv)
	body, _ := v.bucket.get(t, kd)
	replaceFor(t, v.bucket, kv, bytes.NewReader(body), int64(len(body)), meta)

	full := v.run(t, append([]string{"verify", "--full"}, v.keys()...)...)
	full.exitIn(t, "verify --full with a replaced segment body", 7)
	if !strings.Contains(full.stdout, victim) {
		t.Errorf("verify --full does not name %s:\n%s", victim, full.stdout)
	}
	res, _ := v.fetch(t, victim, v.keys()...)
	res.exitIn(t, "wal-fetch of a segment with a replaced body", 255)

	serverEnv := append([]string{"AWS_EC2_METADATA_DISABLED=true"}, v.tg.Env...)
	c := pgtest.New(t, pgtest.Options{NoInit: true, Env: serverEnv})
	// The restore host's identity, readable by the server's user, who runs
	// restore_command.
	id := filepath.Join(pgtest.WorkDir(t), "restore.key")
	b, _ := os.ReadFile(v.identity)
	if err := os.WriteFile(id, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o, _ := pgtest.ServerOwner()
	_ = o.Chown(id)
	r := v.run(t, append([]string{"restore", c.Data, "--backup", v.backups[1], "--identity-file", id, "--verify-key", v.verifyKey}, ownerArgs()...)...)
	if r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	c.AppendConf("archive_mode = off")
	err = c.TryStart()
	deadline := time.Now().Add(60 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		if out, qerr := c.TryPsql("SELECT pg_is_in_recovery()"); qerr == nil && out == "f" {
			t.Fatalf("the server promoted past a segment it could not use:\n%s", c.LogTail(30))
		} else if qerr != nil {
			break // the server stopped
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.StopIfRunning()
	log := c.LogTail(60)
	if !strings.Contains(log, "exit code 255") || !strings.Contains(log, victim) {
		t.Errorf("the server log does not show recovery stopped at %s by wal-fetch's exit 255:\n%s", victim, log)
	}
	if _, err := os.Stat(filepath.Join(c.Data, "pg_wal", "00000002.history")); err == nil {
		t.Error("the server started a new timeline: it promoted")
	}
}

// 14. A part forged to hold only a postgresql.auto.conf whose
// archive_command runs the attacker's command, every CRC-32C forged to
// match, restored with --force over a stopped data directory: no file of
// the part is written, the old pg_control is gone first, and the
// directory does not start.
func (v *attackVictim) forgedPartForce(t *testing.T) {
	m := v.manifest(t, v.backups[1])
	var auto *repo.File
	for i := range m.Files {
		if m.Files[i].Path == "postgresql.auto.conf" {
			auto = &m.Files[i]
		}
	}
	if auto == nil {
		t.Fatal("the backup has no postgresql.auto.conf")
	}
	marker := filepath.Join(pgtest.WorkDir(t), "pwned-by-a-part")
	content := []byte(fmt.Sprintf("archive_mode = on\narchive_command = 'touch %s'\n", marker))
	if int64(len(content)) > auto.Size {
		content = content[:auto.Size]
	}
	content = append(content, bytes.Repeat([]byte("\n"), int(auto.Size)-len(content))...)
	forgeCRC32C(t, content, auto.CRC32C)
	part := tarOf(t, auto.Path, content)
	key := repo.BackupKey(m.Name, m.Parts[auto.Part].Name)
	replaceFor(t, v.bucket, key, bytes.NewReader(part), int64(len(part)), nil)

	// A stopped data directory to restore over: a restore of the genuine
	// backup, pg_control and all.
	dest := restoreDest(t)
	if r := v.run(t, append(append([]string{"restore", dest, "--backup", v.backups[0]}, ownerArgs()...), v.keys()...)...); r.code != 0 {
		t.Fatalf("restore of the genuine older backup: %s", r)
	}
	res := v.run(t, append(append([]string{"restore", dest, "--backup", m.Name, "--force"}, ownerArgs()...), v.keys()...)...)
	res.exitIn(t, "restore --force of a backup with a forged part", 4)
	notStartable(t, dest)
	if b, err := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf")); err == nil && bytes.Contains(b, []byte(marker)) {
		t.Errorf("postgresql.auto.conf holds the forged archive_command:\n%s", b)
	}
	absent(t, "the forged archive_command's marker", marker)
}

// 15. A part that decodes to far more than its recorded size (a zstd bomb
// of 4 GiB of zeros in a few hundred KiB), encrypted to the recipient:
// the first chunk fails its digest, so nothing is decompressed at all.
func (v *attackVictim) bombPart(t *testing.T) {
	m := v.manifest(t, v.backups[1])
	head := tarHeaderBlock(t, m.Files[0].Path, 4<<30)
	bomb := ageEncrypt(t, v.recipient, zstdZeros(zstdWindow8MiB, head, 4<<30))
	// As long as the part it replaces, so that only its content is wrong.
	if n := m.Parts[0].StoredSize; int64(len(bomb)) < n {
		bomb = append(bomb, make([]byte, n-int64(len(bomb)))...)
	}
	key := repo.BackupKey(m.Name, m.Parts[0].Name)
	replaceFor(t, v.bucket, key, bytes.NewReader(bomb), int64(len(bomb)), nil)
	for _, args := range [][]string{
		{"restore", restoreDest(t), "--backup", m.Name},
		{"verify", "--backup", m.Name, "--full"},
	} {
		res := v.run(t, append(args, v.keys()...)...)
		res.exitIn(t, args[0]+" of a bomb part", 4, 7)
		if !strings.Contains(res.stdout+res.stderr, "chunk 0") {
			t.Errorf("%s did not stop at the bomb's first chunk, before decoding: %s", args[0], res)
		}
		if res.maxRSS > 150e6 {
			t.Errorf("%s peaked at %.0f MB RSS", args[0], float64(res.maxRSS)/1e6)
		}
	}
}

// 16. Junk in a file:// store: keys whose envelope announces 1 MiB of
// metadata cost a reader nothing (refused before reading it; listings
// read none), and a FIFO where a segment should be makes wal-fetch and
// wal-push fail at once instead of blocking forever.
func (v *attackVictim) junkInFileStore(t *testing.T) {
	dir := v.bucket.(fileBucket).dir
	junk := filepath.Join(dir, "backups", "junk")
	if err := os.MkdirAll(junk, 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(junk) })
	meta := bytes.Repeat([]byte("x"), 1<<20)
	for i := range 1000 {
		var b bytes.Buffer
		b.WriteString("WVO1")
		b.Write([]byte{0, 0x10, 0, 0})
		b.Write(meta)
		if err := os.WriteFile(filepath.Join(junk, fmt.Sprintf("part-%05d", i)), b.Bytes(), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	res := v.run(t, append([]string{"backup-list"}, v.keys()...)...)
	t.Logf("backup-list over 1000 junk keys: exit %d, peak RSS %.1f MB", res.code, float64(res.maxRSS)/1e6)
	if res.maxRSS > 150e6 {
		t.Errorf("backup-list over 1000 keys of 1 MiB metadata peaked at %.0f MB RSS", float64(res.maxRSS)/1e6)
	}

	seg := v.segs[len(v.segs)-1]
	next, err := archive.ParseWALName(seg)
	if err != nil {
		t.Fatal(err)
	}
	fifoName := archive.SegmentName(next.Timeline, next.SegNo(v.segSize)+50, v.segSize)
	fifo := filepath.Join(dir, filepath.FromSlash(repo.WALKey(archive.WALFile{Name: fifoName, Kind: archive.KindSegment})))
	if err := os.MkdirAll(filepath.Dir(fifo), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(fifo) })
	done := make(chan runResult, 1)
	go func() { r, _ := v.fetch(t, fifoName, v.keys()...); done <- r }()
	select {
	case r := <-done:
		r.exitIn(t, "wal-fetch of a FIFO", 255)
	case <-time.After(60 * time.Second):
		t.Fatal("wal-fetch of a FIFO in the store blocked")
	}
	pgwal := filepath.Join(pgtest.WorkDir(t), "pg_wal")
	if err := os.MkdirAll(pgwal, 0o700); err != nil {
		t.Fatal(err)
	}
	segFile := filepath.Join(pgwal, fifoName)
	if err := os.WriteFile(segFile, append(walPageHeader(t, fifoName, v.segSize, v.sysid), make([]byte, v.segSize-int64(archive.LongHeaderLen))...), 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- runWalvault(t, v.tg, v.writerEnv(), "wal-push", "--upload-concurrency", "1", segFile)
	}()
	select {
	case r := <-done:
		if r.code == 0 || r.code == 1 {
			t.Errorf("wal-push over a FIFO: %s", r)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("wal-push over a FIFO in the store blocked")
	}
}

// ownerArgs gives restored files to the server's user when the tests run
// as root (PostgreSQL refuses to start on root's files).
func ownerArgs() []string {
	if o, _ := pgtest.ServerOwner(); o.AsOther {
		return []string{"--owner", "postgres"}
	}
	return nil
}

// otherHost is the repository of another cluster of the same owner, which
// shares the signing key: what it signs is bound to its own cluster.
func (v *attackVictim) otherHost(t *testing.T) *repo.Repo {
	t.Helper()
	sk, err := crypto.LoadSigningKey(v.signingKey, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := cloud.Open(context.Background(), v.tg.URL, v.tg.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cloud.Close(st) })
	return &repo.Repo{Store: st, Sign: sk, Cluster: strconv.FormatUint(v.sysid+1, 10)}
}

// 17. Objects of another cluster that shares the signing key, copied
// under this prefix: its backup (manifest and parts), a WAL segment in a
// gap of this one's, and its cluster.json over this one's. Each is
// refused as another cluster's; with the foreign cluster.json every
// reader refuses this prefix's own objects, loudly.
func (v *attackVictim) otherCluster(t *testing.T) {
	other := v.otherHost(t)
	t.Run("backup", func(t *testing.T) {
		m := *v.manifest(t, v.backups[1])
		m.Name = v.laterName()
		m.SystemIdentifier = other.Cluster
		m.StopTime = m.StopTime.Add(time.Hour)
		t.Cleanup(func() { v.bucket.removeAll(t, repo.BackupPrefix+m.Name+"/") })
		for _, p := range m.Parts {
			copyObject(t, v.bucket, repo.BackupKey(v.backups[1], p.Name), repo.BackupKey(m.Name, p.Name))
			copyObject(t, v.bucket, repo.SumsKey(repo.BackupKey(v.backups[1], p.Name)), repo.SumsKey(repo.BackupKey(m.Name, p.Name)))
		}
		if err := other.WriteManifest(context.Background(), &m, true); err != nil {
			t.Fatal(err)
		}
		v.refused(t, m.Name)
		// LATEST skips it and restores this cluster's newest.
		dest := restoreDest(t)
		res := v.run(t, append([]string{"restore", dest}, v.keys()...)...)
		if res.code != 0 || !strings.Contains(res.stdout, "restored backup "+v.backups[1]+" ") {
			t.Errorf("restore of LATEST with another cluster's newer backup: %s", res)
		}
	})
	t.Run("segment", func(t *testing.T) {
		name := v.segs[4]
		key := repo.WALKey(archive.WALFile{Name: name, Kind: archive.KindSegment})
		body, meta := v.bucket.get(t, key)
		// The other host archives a segment of the same name (its own
		// WAL), encoded and signed as wal-push does.
		sum := sha256.Sum256(body)
		ometa := map[string]string{repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(body))}
		replaceFor(t, v.bucket, key, bytes.NewReader(body), int64(len(body)), meta)
		if err := other.PutBytes(context.Background(), key, body, cloud.PutOptions{Metadata: ometa}); err != nil {
			t.Fatal(err)
		}
		res, _ := v.fetch(t, name, v.keys()...)
		res.exitIn(t, "wal-fetch of another cluster's segment", 255)
		if !strings.Contains(res.stderr, "written for the cluster with system identifier "+other.Cluster) {
			t.Errorf("wal-fetch does not say whose it is: %s", res.stderr)
		}
		dest := restoreDest(t)
		res = v.run(t, append([]string{"restore", dest, "--backup", v.backups[1]}, v.keys()...)...)
		res.exitIn(t, "restore across another cluster's segment", 4)
		absent(t, "DEST", dest)
	})
	t.Run("cluster.json", func(t *testing.T) {
		ci := repo.ClusterInfo{SystemIdentifier: other.Cluster, Created: time.Now().UTC(), WALSegmentSize: v.segSize}
		body, _ := json.MarshalIndent(ci, "", "  ")
		sum := sha256.Sum256(body)
		orig, origMeta := v.bucket.get(t, repo.ClusterKey)
		t.Cleanup(func() { putBytes(t, v.bucket, repo.ClusterKey, orig, origMeta) })
		if err := other.PutBytes(context.Background(), repo.ClusterKey, body, cloud.PutOptions{Metadata: map[string]string{
			repo.MetaSHA256: hex.EncodeToString(sum[:]), repo.MetaSize: strconv.Itoa(len(body))}}); err != nil {
			t.Fatal(err)
		}
		res := v.run(t, append([]string{"backup-list"}, v.keys()...)...)
		res.exitIn(t, "backup-list under another cluster's cluster.json", 4)
		listedAsGood(t, res, v.backups[1])
		dest := restoreDest(t)
		res = v.run(t, append([]string{"restore", dest}, v.keys()...)...)
		res.exitIn(t, "restore under another cluster's cluster.json", 1, 2, 4)
		absent(t, "DEST", dest)
		r, _ := v.fetch(t, v.segs[2], v.keys()...)
		r.exitIn(t, "wal-fetch under another cluster's cluster.json", 255)
	})
}

// 18. Marks cannot be replayed: an older signed mark record put back
// under a newer name changes nothing (the newest by its signed time
// decides), and the manifest itself is never rewritten.
func (v *attackVictim) replayedMark(t *testing.T) {
	name := v.backups[0]
	before, _ := v.bucket.get(t, repo.BackupKey(name, repo.ManifestFile))
	for _, flag := range []string{"--permanent", "--no-permanent"} {
		res := runWalvault(t, v.tg, append(v.writerEnv(), "WALVAULT_VERIFY_KEY="+v.verifyKey), "backup-mark", name, flag)
		if res.code != 0 {
			t.Fatalf("backup-mark %s: %s", flag, res)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Cleanup(func() {
		for _, k := range listKeys(t, v, repo.BackupKey(name, repo.MarkPrefix)) {
			v.bucket.removeAll(t, k)
		}
	})
	if after, _ := v.bucket.get(t, repo.BackupKey(name, repo.ManifestFile)); !bytes.Equal(before, after) {
		t.Error("backup-mark rewrote the manifest")
	}
	marks := listKeys(t, v, repo.BackupKey(name, repo.MarkPrefix))
	if len(marks) != 2 {
		t.Fatalf("mark records %v, want 2", marks)
	}
	older, meta := v.bucket.get(t, marks[0]) // the "permanent" one
	putBytes(t, v.bucket, repo.BackupKey(name, repo.MarkPrefix+"29991231T000000.000000000Z.json"), older, meta)
	res := v.run(t, append([]string{"backup-list", "--json"}, v.keys()...)...)
	var list []struct {
		Name      string `json:"name"`
		Permanent bool   `json:"permanent"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, res)
	}
	for _, b := range list {
		if b.Name == name && b.Permanent {
			t.Error("a replayed mark record made the backup permanent again")
		}
	}
}

// listKeys lists the store's keys under prefix, with the walvault
// library, as any reader would.
func listKeys(t *testing.T, v *attackVictim, prefix string) []string {
	t.Helper()
	st, err := cloud.Open(context.Background(), v.tg.URL, v.tg.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close(st)
	var keys []string
	if err := st.List(context.Background(), prefix, cloud.ListOptions{}, func(o cloud.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// 19. What monitoring reports is authenticated: a segment deleted before
// the newest backup, a part of the older backup deleted, and an empty
// unsigned segment name planted past the last one. status names all
// three and exits 7; its window does not span the gap, and the planted
// name is not the last archived segment.
func (v *attackVictim) blindMonitoring(t *testing.T) {
	start, err := archive.ParseWALName(v.genuine.StartWAL)
	if err != nil {
		t.Fatal(err)
	}
	old := v.manifest(t, v.backups[0])
	var gap string
	for _, s := range v.segs {
		w, _ := archive.ParseWALName(s)
		if s > old.StopWAL && w.SegNo(v.segSize) < start.SegNo(v.segSize) {
			gap = s
			break
		}
	}
	if gap == "" {
		t.Fatalf("no segment between %s and %s among %v", old.StopWAL, v.genuine.StartWAL, v.segs)
	}
	gapKey := repo.WALKey(archive.WALFile{Name: gap, Kind: archive.KindSegment})
	partKey := repo.BackupKey(old.Name, old.Parts[0].Name)
	for _, k := range []string{gapKey, partKey} {
		body, meta := v.bucket.get(t, k)
		t.Cleanup(func() { putBytes(t, v.bucket, k, body, meta) })
	}
	v.bucket.removeAll(t, gapKey)
	v.bucket.removeAll(t, partKey)
	last, _ := archive.ParseWALName(v.segs[len(v.segs)-1])
	planted := archive.SegmentName(last.Timeline, last.SegNo(v.segSize)+3, v.segSize)
	plantedKey := repo.WALKey(archive.WALFile{Name: planted, Kind: archive.KindSegment})
	putBytes(t, v.bucket, plantedKey, nil, nil)
	t.Cleanup(func() { v.bucket.removeAll(t, plantedKey) })

	res := v.run(t, append([]string{"status", "--no-server", "--state-file", "none", "--json"}, v.keys()...)...)
	res.exitIn(t, "status with a gap, a missing part and a planted segment", 7)
	for _, want := range []string{gap, old.Parts[0].Name, planted} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("status does not name %s:\n%s", want, res.stderr)
		}
	}
	var rep struct {
		LastArchived *struct {
			Name string `json:"name"`
		} `json:"last_archived_segment"`
		PITR *struct {
			StartBackup string `json:"start_backup"`
		} `json:"pitr_window"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("status --json: %v\n%s", err, res.stdout)
	}
	if rep.LastArchived == nil || rep.LastArchived.Name == planted {
		t.Errorf("last archived %+v: the planted name counted", rep.LastArchived)
	}
	if rep.PITR == nil || rep.PITR.StartBackup != v.backups[1] {
		t.Errorf("PITR window %+v: want it to start at %s, after the gap\n%s", rep.PITR, v.backups[1], res.stdout)
	}
	vr := v.run(t, append([]string{"verify"}, v.keys()...)...)
	vr.exitIn(t, "verify with a gap, a missing part and a planted segment", 7)
	bl := v.run(t, append([]string{"backup-list"}, v.keys()...)...)
	bl.exitIn(t, "backup-list with a planted segment", 4)
}

// 20. A password in the connection string never reaches a command line:
// pg_dump and pg_restore, watched through a --pg-bin-dir of wrappers
// that record their arguments and exec the real tools, get it in their
// environment.
func (v *attackVictim) passwordOffArgv(t *testing.T) {
	const secret = "s3cret-in-the-dsn"
	bin := pgtest.WorkDir(t)
	logf := filepath.Join(bin, "argv.log")
	for _, tool := range []string{"pg_dump", "pg_restore", "psql", "pg_dumpall"} {
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $* PGPASSWORD=${PGPASSWORD:+set}\" >> %s\nexec %s \"$@\"\n", tool, logf, filepath.Join(v.c.Bin, tool))
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(script), 0o755); err != nil { // #nosec G306 -- a test wrapper
			t.Fatal(err)
		}
	}
	dsn := v.c.ConnString("postgres") + " password=" + secret
	res := runWalvault(t, v.tg, v.writerEnv(), "dump-push", "postgres", "--dbname", dsn, "--pg-bin-dir", bin)
	if res.code != 0 {
		t.Fatalf("dump-push with a password in --dbname: %s", res)
	}
	name := strings.Fields(res.stdout)[1]
	v.c.Psql("CREATE DATABASE argv_restore")
	res = v.run(t, append([]string{"dump-restore", name, "--database", "postgres", "--dbname", v.c.ConnString("argv_restore") + " password=" + secret, "--pg-bin-dir", bin}, v.keys()...)...)
	if res.code != 0 {
		t.Fatalf("dump-restore with a password in --dbname: %s", res)
	}
	log, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(log, []byte(secret)) || !bytes.Contains(log, []byte("pg_dump ")) || !bytes.Contains(log, []byte("pg_restore ")) ||
		bytes.Count(log, []byte("PGPASSWORD=set")) < 2 {
		t.Errorf("the tools' command lines:\n%s", log)
	}
}
