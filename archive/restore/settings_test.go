package restore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/walvault/walvault/archive"
)

func TestRenderRecovery(t *testing.T) {
	tt0 := time.Date(2026, 11, 23, 14, 5, 0, 120000000, time.FixedZone("CET", 3600))
	lsn := archive.LSN(0x5000060)
	yes := true
	argv := []string{"/usr/local/bin/walvault", "wal-fetch", "--store=s3://b/p", "--identity-file=/etc/walvault/key"}
	tests := []struct {
		name    string
		version int
		target  Target
		standby bool
		file    string
		signal  string
		want    []string
		absent  []string
	}{
		{name: "latest", version: 150004, file: "postgresql.auto.conf", signal: "recovery.signal",
			want:   []string{"restore_command = '/usr/local/bin/walvault wal-fetch --store=s3://b/p --identity-file=/etc/walvault/key %f %p'", "recovery_target_timeline = 'latest'"},
			absent: []string{"recovery_target_action", "recovery_target_time ="}},
		{name: "time in UTC", version: 150004, target: Target{Time: &tt0, Action: "promote"}, file: "postgresql.auto.conf", signal: "recovery.signal",
			want: []string{"recovery_target_time = '2026-11-23 13:05:00.12+00'", "recovery_target_action = 'promote'"}},
		{name: "lsn inclusive", version: 130000, target: Target{LSN: &lsn, Inclusive: &yes, Action: "pause", Timeline: "3"}, file: "postgresql.auto.conf", signal: "recovery.signal",
			want: []string{"recovery_target_lsn = '0/5000060'", "recovery_target_inclusive = 'true'", "recovery_target_action = 'pause'", "recovery_target_timeline = '3'"}},
		{name: "name with a quote", version: 150004, target: Target{Name: "it's", Action: "shutdown"}, file: "postgresql.auto.conf", signal: "recovery.signal",
			want: []string{"recovery_target_name = 'it''s'", "recovery_target_action = 'shutdown'"}},
		{name: "xid", version: 150004, target: Target{XID: "1234", Action: "promote"}, file: "postgresql.auto.conf", signal: "recovery.signal",
			want: []string{"recovery_target_xid = '1234'"}},
		{name: "immediate", version: 150004, target: Target{Immediate: true, Action: "promote"}, file: "postgresql.auto.conf", signal: "recovery.signal",
			want: []string{"recovery_target = 'immediate'"}},
		{name: "standby", version: 150004, standby: true, target: Target{Action: "promote"}, file: "postgresql.auto.conf", signal: "standby.signal",
			absent: []string{"recovery_target_action", "standby_mode"}},
		{name: "pg11 recovery.conf", version: 110000, target: Target{Immediate: true, Action: "promote"}, file: "recovery.conf",
			want: []string{"recovery_target = 'immediate'", "recovery_target_timeline = 'latest'"}, absent: []string{"standby_mode"}},
		{name: "pg10 standby", version: 100000, standby: true, file: "recovery.conf", want: []string{"standby_mode = 'on'"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := renderRecovery(tc.version, argv, tc.target, tc.standby)
			if s.File != tc.file || s.Signal != tc.signal {
				t.Fatalf("file %q signal %q, want %q %q", s.File, s.Signal, tc.file, tc.signal)
			}
			text := strings.Join(s.Lines, "\n")
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("missing %q in:\n%s", w, text)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(text, a) {
					t.Errorf("unexpected %q in:\n%s", a, text)
				}
			}
		})
	}
}

func TestRestoreCommandQuoting(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"/bin/walvault", "wal-fetch"}, "/bin/walvault wal-fetch %f %p"},
		{[]string{"/opt/my tools/walvault", "wal-fetch", "--config=/etc/o'brien.yaml"}, `'/opt/my tools/walvault' wal-fetch '--config=/etc/o'\''brien.yaml' %f %p`},
		{[]string{"/bin/walvault", "wal-fetch", "--store=file:///srv/100%/x"}, "/bin/walvault wal-fetch --store=file:///srv/100%%/x %f %p"},
		{[]string{"/bin/walvault", "wal-fetch", "--identity-file=/k$HOME"}, "/bin/walvault wal-fetch '--identity-file=/k$HOME' %f %p"},
	}
	for _, tt := range tests {
		if got := restoreCommand(tt.argv); got != tt.want {
			t.Errorf("restoreCommand(%q)\n got %s\nwant %s", tt.argv, got, tt.want)
		}
	}
	if got := confQuote(`a\b'c`); got != `'a\\b''c'` {
		t.Errorf("confQuote = %s", got)
	}
}

func TestParseTargetTime(t *testing.T) {
	utc := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v }
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-11-23 14:05:00+00", utc("2026-11-23T14:05:00Z")},
		{"2026-11-23 14:05:00.123456+00", utc("2026-11-23T14:05:00.123456Z")},
		{"2026-11-23 14:05:00+05:30", utc("2026-11-23T08:35:00Z")},
		{"2026-11-23T14:05:00Z", utc("2026-11-23T14:05:00Z")},
		{"2026-11-23 14:05:00 UTC", utc("2026-11-23T14:05:00Z")},
		{"2026-11-23 14:05:00-02", utc("2026-11-23T16:05:00Z")},
	}
	for _, tt := range tests {
		got, err := ParseTargetTime(tt.in)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("ParseTargetTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	local, err := ParseTargetTime("2026-11-23 14:05:00")
	if err != nil || !local.Equal(time.Date(2026, 11, 23, 14, 5, 0, 0, time.Local)) {
		t.Errorf("a time without zone is local: %v, %v", local, err)
	}
	for _, bad := range []string{"", "yesterday", "2026-13-01 00:00:00", "14:05"} {
		if _, err := ParseTargetTime(bad); !errors.Is(err, archive.ErrBadInput) {
			t.Errorf("ParseTargetTime(%q): %v", bad, err)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	now := time.Now()
	lsn := archive.LSN(1)
	yes := true
	tests := []struct {
		name string
		t    Target
		ok   bool
	}{
		{"empty gets defaults", Target{}, true},
		{"time", Target{Time: &now}, true},
		{"two targets", Target{Time: &now, LSN: &lsn}, false},
		{"name and immediate", Target{Name: "x", Immediate: true}, false},
		{"bad xid", Target{XID: "abc"}, false},
		{"bad action", Target{Action: "explode"}, false},
		{"timeline number", Target{Timeline: "3"}, true},
		{"timeline CURRENT", Target{Timeline: "CURRENT"}, true},
		{"timeline zero", Target{Timeline: "0"}, false},
		{"timeline word", Target{Timeline: "newest"}, false},
		{"inclusive without a target", Target{Inclusive: &yes}, false},
		{"inclusive with a name", Target{Name: "x", Inclusive: &yes}, false},
		{"inclusive with xid", Target{XID: "5", Inclusive: &yes}, true},
	}
	for _, tt := range tests {
		err := tt.t.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
		if err == nil && (tt.t.Action == "" || tt.t.Timeline == "") {
			t.Errorf("%s: defaults not filled: %+v", tt.name, tt.t)
		}
		if err != nil && !errors.Is(err, archive.ErrBadInput) {
			t.Errorf("%s: %v is not ErrBadInput", tt.name, err)
		}
	}
}
