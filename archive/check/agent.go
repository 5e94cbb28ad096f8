package check

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/agent/proto"
	"github.com/walvault/walvault/archive/pg"
	"github.com/walvault/walvault/cloud"
)

// agentState is what check reads of the agent's status answer (the
// agent's counters, as walvault-wal status prints them).
type agentState struct {
	PID               int       `json:"pid"`
	PGData            string    `json:"pgdata"`
	Store             string    `json:"store"`
	SegmentsArchived  int64     `json:"segments_archived"`
	UploadErrors      int64     `json:"upload_errors"`
	Uploading         int64     `json:"uploading"`
	ReadyCount        int64     `json:"ready_count"`
	ReadyBytes        int64     `json:"ready_bytes"`
	OldestReadyAgeSec float64   `json:"oldest_ready_age_seconds"`
	LastError         string    `json:"last_error"`
	LastErrorTime     time.Time `json:"last_error_time"`
}

// recentError is how recent an agent's upload error must be to be worth
// a warning.
const recentError = 5 * time.Minute

// checkAgent reports, when archive_command runs walvault-wal, the agent
// that serves this data directory: whether one answers on the socket the
// client would use, whether it is this server's and this store's, its
// backlog and lag. No agent is a warning (the client then runs wal-push
// for every segment), not a failure: archiving still works as long as the
// fallback has a store, which the archive_command check reports.
func checkAgent(ctx context.Context, rep *Report, srv *pg.Server, ac archiveCmd, opts Options) {
	const name = "agent"
	pm, err := srv.Postmaster(ctx)
	if err != nil {
		rep.add(name, Warn, "archive_command runs walvault-wal, but the server's data_directory is not visible to this role, so check cannot find the agent's socket", "run check as the server's user or a superuser")
		return
	}
	socket := ac.socket
	if socket == "" && ac.env != nil {
		socket = ac.env["WALVAULT_SOCKET"]
	}
	if socket == "" {
		socket = proto.DefaultSocket(filepath.Join(pm.DataDirectory, "pg_wal"))
	}
	start := fmt.Sprintf("walvault agent --pgdata %s (with the settings wal-push uses: the same --config)", pm.DataDirectory)
	st, err := askAgent(socket)
	if err != nil {
		rep.add(name, Warn, fmt.Sprintf("no walvault agent answers on %s (%s): walvault-wal runs walvault wal-push for every segment, which works but starts a process per segment", socket, archive.OneLine(err.Error())),
			"start the agent as the server's user: "+start+", or its systemd unit (walvault systemd-units)")
		return
	}
	if !sameDir(st.PGData, pm.DataDirectory) {
		rep.add(name, Fail, fmt.Sprintf("the walvault agent on %s (pid %d) serves %s, not this server's %s: walvault-wal falls back to wal-push", socket, st.PID, st.PGData, pm.DataDirectory),
			"run one agent per data directory: "+start)
		return
	}
	if opts.StoreURL != "" && st.Store != "" && !sameStore(st.Store, opts.StoreURL) {
		rep.add(name, Fail, fmt.Sprintf("the walvault agent (pid %d) archives to %s, but this check uses %s", st.PID, cloud.Redact(st.Store), cloud.Redact(opts.StoreURL)),
			"give the agent and walvault's other commands the same store (one --config file), then restart the agent")
		return
	}
	lag := "no backlog"
	if st.ReadyCount > 0 {
		lag = fmt.Sprintf("backlog %d file(s) (%s), lag %s", st.ReadyCount, archive.HumanBytes(st.ReadyBytes),
			time.Duration(st.OldestReadyAgeSec*float64(time.Second)).Round(time.Second))
	}
	detail := fmt.Sprintf("walvault agent running for %s (pid %d): %s, %d uploading, %d file(s) archived since it started, %d upload error(s)",
		st.PGData, st.PID, lag, st.Uploading, st.SegmentsArchived, st.UploadErrors)
	if st.LastError != "" && time.Since(st.LastErrorTime) < recentError {
		rep.add(name, Warn, fmt.Sprintf("%s; the last, %s ago: %s", detail, time.Since(st.LastErrorTime).Round(time.Second), archive.OneLine(st.LastError)),
			"the agent retries; see its log (journalctl -u walvault-agent@...) for the store's error")
		return
	}
	rep.add(name, OK, detail, "")
}

// askAgent asks the agent on socket for its state.
func askAgent(socket string) (agentState, error) {
	var st agentState
	conn, err := proto.Dial(socket, 5*time.Second)
	if err != nil {
		return st, err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.WriteString(proto.Request{Verb: proto.VerbStatus}.Encode()); err != nil {
		return st, err
	}
	resp, err := proto.ReadResponse(bufio.NewReader(conn))
	if err != nil {
		return st, err
	}
	if resp.Code != 0 {
		return st, fmt.Errorf("the agent answered %d: %s", resp.Code, resp.Message)
	}
	if err := json.Unmarshal([]byte(resp.Message), &st); err != nil {
		return st, fmt.Errorf("the agent's status: %w", err)
	}
	return st, nil
}

// sameDir compares two directories by what they are, links resolved.
func sameDir(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	if ra == rb {
		return true
	}
	sa, err1 := os.Stat(ra)
	sb, err2 := os.Stat(rb)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
