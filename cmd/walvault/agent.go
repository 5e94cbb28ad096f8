//go:build !walvault_front

package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive/agent"
	"github.com/walvault/walvault/cloud"
)

func init() {
	register(agentCommands)
}

func agentCommands() []*cli.Command {
	return []*cli.Command{{
		Name:  "agent",
		Usage: "run the archiving agent for one data directory (archive_command = 'walvault-wal push %p')",
		Description: "Watches pg_wal/archive_status and pushes every .ready file as it appears, up to --upload-concurrency at once,\n" +
			"and answers walvault-wal (archive_command, restore_command) on a unix socket (default pg_wal/.walvault/agent.sock,\n" +
			"mode 0600). One agent per data directory: a second one exits 5. It runs until SIGINT or SIGTERM.",
		ArgsUsage: " ",
		Flags: join(storeFlags(), writeFlags(), copyStoreFlags(), []cli.Flag{
			stringFlag("pgdata", "the cluster's data directory (PGDATA)", ""),
			stringFlag("spool-dir", "walvault's own working directory (default: pg_wal/.walvault)", ""),
			// Not a config file key: walvault-wal, which reads no config
			// file, must be told the same path (--socket or WALVAULT_SOCKET).
			&cli.StringFlag{Name: "socket", Usage: "the unix socket to listen on (default: pg_wal/.walvault/agent.sock); give walvault-wal the same --socket or WALVAULT_SOCKET", EnvVars: []string{"WALVAULT_SOCKET"}},
			stringFlag("socket-group", "let this group use the socket too (mode 0660)", ""),
			stringFlag("metrics-listen", "serve Prometheus /metrics on this address (e.g. 127.0.0.1:9187)", ""),
			boolFlag("no-archive", "only serve restore_command (a restored or standby directory): push nothing, need no signing key"),
			fallbackStoreFlag(),
			intFlag("prefetch", "segments to keep downloaded ahead of replay (0: off)", 8),
			intFlag("download-concurrency", "parallel downloads", 4),
			&cli.StringFlag{Name: "cpu-profile", Hidden: true, Usage: "write a Go CPU profile of the agent's run to this file"},
		}),
		Action: runAgent,
	}}
}

func runAgent(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments (the data directory is --pgdata)"); err != nil {
		return err
	}
	pgdata := c.String("pgdata")
	if pgdata == "" {
		return usageError("--pgdata: give the cluster's data directory")
	}
	if n := c.Int("prefetch"); n < 0 || n > 1024 {
		return usageError("--prefetch %d: use 0 (off) to 1024", n)
	}
	if _, err := downloadConcurrency(c); err != nil {
		return err
	}
	gid := -1
	if g := c.String("socket-group"); g != "" {
		grp, err := user.LookupGroup(g)
		if err != nil {
			if grp, err = user.LookupGroupId(g); err != nil {
				return usageError("--socket-group %q: no such group", g)
			}
		}
		if gid, err = strconv.Atoi(grp.Gid); err != nil {
			return usageError("--socket-group %q: %v", g, err)
		}
	}
	acc := writes | reads | decrypts
	if c.Bool("no-archive") {
		acc = reads | decrypts
	} else if len(c.StringSlice("fallback-store")) > 0 {
		// A fallback would answer "already archived" for what the store lacks.
		return usageError("--fallback-store serves restore_command only: give it with --no-archive")
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A resident process beside the database: collect garbage before
		// the heap doubles (each upload's buffers are short-lived) rather
		// than hold on to what the last burst used.
		debug.SetMemoryLimit(agentMemoryLimit)
	}
	r, err := openArchive(c, acc)
	if err != nil {
		return err
	}
	defer cloud.Close(r.Store)
	var seconds []agent.SecondStore
	if !c.Bool("no-archive") {
		opened, closeAll, err := openCopyStores(c, r)
		if err != nil {
			return err
		}
		defer closeAll()
		for _, s := range opened {
			seconds = append(seconds, agent.SecondStore{Repo: s.r, ID: s.id})
		}
	}
	a, err := agent.Open(r, agent.Config{
		SecondStores:        seconds,
		CopyWait:            c.Bool("copy-store-wait"),
		PGData:              pgdata,
		SpoolDir:            c.String("spool-dir"),
		Socket:              c.String("socket"),
		SocketGID:           gid,
		Concurrency:         c.Int("upload-concurrency"),
		NoArchive:           c.Bool("no-archive"),
		Prefetch:            c.Int("prefetch"),
		DownloadConcurrency: c.Int("download-concurrency"),
		StoreIdentity:       agent.StoreIdentity(cloud.Identity(r.Store, cloud.Endpoint(c.String("store"), backendValues(c), os.Getenv))),
		ExitCode:            exitCode,
		Log:                 slog.Default(),
	})
	if err != nil {
		return err
	}
	if addr := c.String("metrics-listen"); addr != "" {
		srv, err := serveMetrics(addr, a)
		if err != nil {
			a.Close()
			return err
		}
		defer func() { _ = srv.Close() }()
	}
	if p := c.String("cpu-profile"); p != "" {
		f, err := os.Create(p) // #nosec G304 -- the operator's profile file
		if err != nil {
			a.Close()
			return usageError("--cpu-profile: %v", err)
		}
		defer func() {
			if err := f.Close(); err != nil {
				slog.Warn("cannot write the CPU profile", "file", p, "err", err)
			}
		}()
		if err := pprof.StartCPUProfile(f); err == nil {
			defer pprof.StopCPUProfile()
		}
	}
	// SIGINT / SIGTERM is how an agent is meant to stop: Run returns nil.
	return a.Run(c.Context)
}

// agentMemoryLimit is the agent's soft memory limit (GOMEMLIMIT overrides).
const agentMemoryLimit = 80 << 20

// serveMetrics starts the /metrics endpoint.
func serveMetrics(addr string, a *agent.Agent) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.Metrics(version), promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError("--metrics-listen %s: %v", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("metrics endpoint stopped", "err", err)
		}
	}()
	slog.Info("serving metrics", "addr", ln.Addr().String())
	return srv, nil
}
