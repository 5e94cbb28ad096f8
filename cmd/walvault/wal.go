package main

import (
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/wal"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

func init() {
	register(walCommands)
}

func walCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "wal-push",
			Usage:     "archive one WAL file (archive_command = 'walvault wal-push %p')",
			ArgsUsage: "PATH",
			Flags: join(storeFlags(), writeFlags(), copyStoreFlags(), []cli.Flag{
				stringFlag("spool-dir", "walvault's own working directory (default: pg_wal/.walvault)", ""),
			}),
			Action: walPush,
		},
		{
			Name:      "wal-fetch",
			Usage:     "restore one archived WAL file (restore_command = 'walvault wal-fetch %f %p')",
			ArgsUsage: "NAME DEST",
			Flags: join(storeFlags(), []cli.Flag{
				intFlag("prefetch", "segments to download ahead in the background (0: off)", 8),
				intFlag("download-concurrency", "parallel downloads", 4),
				stringFlag("spool-dir", "walvault's own working directory (default: pg_wal/.walvault)", ""),
				fallbackStoreFlag(),
			}),
			Action: walFetch,
		},
		{
			Name:      "wal-prefetch",
			Hidden:    true, // started by wal-fetch in the background
			ArgsUsage: "NAME SEGMENT-SIZE SPOOL",
			Flags: join(storeFlags(), []cli.Flag{
				intFlag("prefetch", "", 8),
				intFlag("download-concurrency", "", 4),
				stringFlag("spool-dir", "", ""),
				fallbackStoreFlag(),
			}),
			Action: walPrefetch,
		},
		{
			Name:  "keygen",
			Usage: "create the keys: an age identity (decrypts; restore hosts) and a signing key (proves objects; the database host)",
			Description: "walvault keygen IDENTITY-FILE writes an age identity and prints its public key (the recipient) on stdout.\n" +
				"--signing-key FILE also writes a signing key and prints its public half (the verify key) on the next line.\n" +
				"Put the recipient and the signing key on the database host, the identity and the verify key where restores\n" +
				"run (the verify key everywhere: it is public). Existing files are never overwritten.",
			ArgsUsage: "[IDENTITY-FILE]",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "signing-key", Usage: "also create a signing key in this file"},
			},
			Action: keygen,
		},
		{
			Name:  "version",
			Usage: "print the version",
			Action: func(c *cli.Context) error {
				fmt.Fprintln(c.App.Writer, "walvault", version)
				return nil
			},
		},
	}
}

func walPush(c *cli.Context) error {
	if err := wantArgs(c, 1, "the WAL file path (%p)"); err != nil {
		return err
	}
	start := time.Now()
	r, err := openArchive(c, writes)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	// An identity is needed only to compare a file with an encrypted copy
	// stored with other compression settings; one that does not load must
	// not stop archiving, which usually never needs it.
	if p := c.String("identity-file"); p != "" {
		if ids, err := crypto.LoadIdentities(p, c.Bool("allow-insecure-identity")); err != nil {
			slog.Warn("identity not loaded", "err", err)
		} else {
			r.Identities = ids
		}
	}
	seconds, closeAll, err := openCopyStores(c, r)
	if err != nil {
		return err
	}
	defer closeAll()
	opts := wal.PushOptions{Concurrency: c.Int("upload-concurrency"), SpoolDir: c.String("spool-dir")}
	wait := c.Bool("copy-store-wait") && len(seconds) > 0
	if wait {
		// PostgreSQL is told only of what every store has: no file is
		// pushed ahead, whose later answer would come from a marker.
		opts.Concurrency, opts.KeepBody = 1, true
	}
	recorded := map[string][]wal.CopyRecord{}
	var mu sync.Mutex
	if len(seconds) > 0 {
		opts.OnStored = func(so wal.StoredObject) {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range seconds {
				rec, err := recordCopy(s, c.String("spool-dir"), c.Args().First(), so)
				if err != nil {
					slog.Warn("not recorded for the copy-store", "copy_store", s.spec.URL, "file", so.Name, "err", err)
					continue
				}
				recorded[s.id] = append(recorded[s.id], rec)
			}
		}
	}
	res, err := wal.Push(c.Context, r, c.Args().First(), opts)
	if err != nil {
		return err
	}
	if wait && res.Object != nil {
		if err := copyNow(c, r, seconds, recorded, res.Object, c.String("spool-dir"), c.Args().First()); err != nil {
			return err
		}
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	switch {
	case res.Ahead:
		slog.Debug("already pushed ahead", "file", res.Name, "ms", ms)
	case res.Already:
		slog.Info("already archived with identical content", "file", res.Name, "ms", ms)
	default:
		slog.Debug("archived", "file", res.Name, "bytes", res.RawBytes, "stored", res.StoredBytes, "ms", ms)
	}
	return nil
}

func walFetch(c *cli.Context) error {
	if err := wantArgs(c, 2, "NAME (%f) and DEST (%p)"); err != nil {
		return err
	}
	r, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	name, dest := c.Args().Get(0), c.Args().Get(1)
	spool := c.String("spool-dir")
	if spool == "" {
		spool = filepath.Join(filepath.Dir(dest), ".walvault")
	}
	res, err := wal.Fetch(c.Context, r, name, dest, wal.FetchOptions{SpoolDir: spool})
	if err != nil {
		if isNotInArchive(err) {
			return quietError{err}
		}
		return err // run decides whether it stops recovery
	}
	slog.Debug("fetched", "file", name, "bytes", res.Size, "prefetched", res.Prefetched)
	if res.Prefetched {
		logPrefetchedFallback(spool, name)
	}
	if n := c.Int("prefetch"); n > 0 {
		if wf, err := archive.ParseWALName(name); err == nil && wf.Kind == archive.KindSegment {
			startPrefetcher(c, name, res.Size, spool)
		}
	}
	return nil
}

// prefetchArgs is the prefetcher's command line: the flags of this
// command line only. Settings from the environment are inherited, and must
// not move into the child's argv, where every local user can read them.
func prefetchArgs(name string, segSize int64, spool string) []string {
	args := append([]string{"wal-prefetch"}, cmdlineFlags...)
	return append(args, "--", name, strconv.FormatInt(segSize, 10), spool)
}

// startPrefetcher re-runs this binary, detached in its own session, as
// "wal-prefetch" with the same settings. PostgreSQL does not wait for it.
func startPrefetcher(c *cli.Context, name string, segSize int64, spool string) {
	exe, err := commandPath()
	if err != nil {
		return
	}
	args := prefetchArgs(name, segSize, spool)
	cmd := exec.Command(exe, args...) // #nosec G204 -- our own binary and settings
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	if err := cmd.Start(); err != nil {
		slog.Debug("prefetcher did not start", "err", err)
		return
	}
	_ = cmd.Process.Release()
}

func walPrefetch(c *cli.Context) error {
	if err := wantArgs(c, 3, "NAME SEGMENT-SIZE SPOOL"); err != nil {
		return err
	}
	r, err := openArchive(c, reads|decrypts)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	size, err := strconv.ParseInt(c.Args().Get(1), 10, 64)
	if err != nil {
		return usageError("segment size %q", c.Args().Get(1))
	}
	noteFallbackPrefetch(c.Args().Get(2))
	return wal.Prefetch(c.Context, r, c.Args().Get(0), size, c.Int("prefetch"), c.Int("download-concurrency"), c.Args().Get(2))
}

func keygen(c *cli.Context) error {
	signing := c.String("signing-key")
	if c.NArg() > 1 || c.NArg() == 0 && signing == "" {
		return usageError("expected the identity file to create, or --signing-key FILE, or both: run 'walvault keygen --help'")
	}
	if c.NArg() == 1 {
		r, err := crypto.Generate(c.Args().First())
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "walvault: wrote identity %s (mode 0600): keep a copy off this server; restores need it\n", c.Args().First())
		fmt.Fprintln(c.App.Writer, r)
	}
	if signing != "" {
		vk, err := crypto.GenerateSigningKey(signing)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "walvault: wrote signing key %s (mode 0600): it belongs on the database host only (signing-key:); give its verify key to every command that reads the archive (verify-key:)\n", signing)
		fmt.Fprintln(c.App.Writer, vk)
	}
	return nil
}
