package check

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/walvault/walvault/cloud"
)

// archiveCmd is what check makes of archive_command: whether it runs
// walvault wal-push, how, and the settings that walvault would use.
type archiveCmd struct {
	calls  bool
	why    string // when !calls
	binary string
	hasP   bool
	// client: archive_command runs walvault-wal push, the agent's client,
	// which runs walvault wal-push with the same flags (its fallback) when
	// no agent answers; socket is its --socket, if given.
	client bool
	socket string
	// env is the server's environment, nil when it cannot be seen.
	env map[string]string
	// binaryProblem: the binary cannot be found where the server looks.
	binaryProblem string
	set           Resolved
}

// unknown says what check cannot see, when a setting is uncertain.
func (ac archiveCmd) unknown() string {
	if !ac.set.Store.Known {
		return ac.set.Store.Why
	}
	if !ac.set.Recipients.Known {
		return ac.set.Recipients.Why
	}
	return ""
}

// cmdToken is one word of a shell command, or an operator (; | & && ||).
type cmdToken struct {
	text string
	op   bool
}

// shellSplit splits a command line as sh would into words (quotes and
// backslashes removed) and operators. It does not expand anything.
func shellSplit(s string) []cmdToken {
	var out []cmdToken
	var cur strings.Builder
	in := false
	flush := func() {
		if in {
			out = append(out, cmdToken{text: cur.String()})
			cur.Reset()
			in = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			flush()
		case c == '\'':
			in = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				cur.WriteString(s[i+1:])
				i = len(s)
			} else {
				cur.WriteString(s[i+1 : i+1+j])
				i += j + 1
			}
		case c == '"':
			in = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			in = true
			i++
			cur.WriteByte(s[i])
		case c == ';' || c == '|' || c == '&' || c == '(' || c == ')':
			flush()
			op := string(c)
			if (c == '|' || c == '&') && i+1 < len(s) && s[i+1] == c {
				op += string(c)
				i++
			}
			out = append(out, cmdToken{text: op, op: true})
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}

func isAssignment(w string) bool {
	k, _, ok := strings.Cut(w, "=")
	if !ok || k == "" {
		return false
	}
	for i, r := range k {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// walPushCall is archive_command's call of walvault wal-push: the binary,
// the VAR=value assignments before it, and its arguments.
type walPushCall struct {
	binary string
	assign map[string]string
	args   []string
	client bool
	socket string
}

// resolveArchiveCommand parses archive_command (as PostgreSQL reports it;
// "library:NAME" for archive_library) and, with resolve, the settings the
// walvault it runs would use. env is the server's environment, nil when it
// cannot be seen (envWhy says why).
func resolveArchiveCommand(cmd string, env map[string]string, envWhy string, resolve Resolver) archiveCmd {
	var ac archiveCmd
	if lib, ok := strings.CutPrefix(cmd, "library:"); ok {
		ac.why = fmt.Sprintf("archive_library = %q is set: PostgreSQL uses it instead of archive_command", lib)
		return ac
	}
	if strings.TrimSpace(cmd) == "" {
		ac.why = "archive_command is empty"
		return ac
	}
	call, ok := findWALPush(shellSplit(cmd))
	if !ok {
		ac.why = "archive_command does not run walvault wal-push"
		return ac
	}
	ac.calls, ac.binary, ac.client, ac.socket, ac.env = true, call.binary, call.client, call.socket, env
	if resolve == nil {
		resolve = cannotResolve
	}
	ac.set = resolve(call.args, call.assign, env, envWhy)
	for _, a := range ac.set.Args {
		ac.hasP = ac.hasP || strings.Contains(a, "%p")
	}
	if env != nil {
		ac.binaryProblem = findBinary(ac.binary, env["PATH"])
	}
	return ac
}

// findWALPush finds the first simple command that runs walvault wal-push,
// or walvault-wal push (the agent's client, which runs wal-push with the
// same flags when no agent answers), with the assignments before it
// (through env and exec) and its arguments up to the next operator.
func findWALPush(toks []cmdToken) (walPushCall, bool) {
	at, client := -1, false
	for i := 0; i+1 < len(toks); i++ {
		if toks[i].op || toks[i+1].op {
			continue
		}
		base := filepath.Base(toks[i].text)
		if base == "walvault-wal" && toks[i+1].text == "push" {
			at, client = i, true
			break
		}
		if strings.HasPrefix(base, "walvault") && toks[i+1].text == "wal-push" {
			at = i
			break
		}
	}
	if at < 0 {
		return walPushCall{}, false
	}
	call := walPushCall{binary: toks[at].text, assign: map[string]string{}, client: client}
	for j := at - 1; j >= 0 && !toks[j].op; j-- {
		if k, v, ok := strings.Cut(toks[j].text, "="); ok && isAssignment(toks[j].text) {
			call.assign[k] = v
		} else if toks[j].text != "env" && toks[j].text != "exec" {
			break
		}
	}
	skip := false
	for _, t := range toks[at+2:] {
		if t.op {
			break
		}
		switch {
		case skip:
			skip = false
			call.socket = t.text
		case client && (t.text == "--socket" || t.text == "-socket"):
			skip = true // the client's own flag, with its value
		case client && (strings.HasPrefix(t.text, "--socket=") || strings.HasPrefix(t.text, "-socket=")):
			_, call.socket, _ = strings.Cut(t.text, "=")
		default:
			call.args = append(call.args, t.text)
		}
	}
	return call, true
}

// findBinary says why the server could not run bin, or "".
func findBinary(bin, pathList string) string {
	exec := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
	}
	if strings.Contains(bin, "/") {
		if !filepath.IsAbs(bin) {
			return ""
		}
		if !exec(bin) {
			return fmt.Sprintf("archive_command runs %s, which is not an executable file on this machine", bin)
		}
		return ""
	}
	if pathList == "" {
		pathList = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" // sh's default
	}
	for _, d := range filepath.SplitList(pathList) {
		if d != "" && exec(filepath.Join(d, bin)) {
			return ""
		}
	}
	return fmt.Sprintf("archive_command runs %q, which is not in the server's PATH (%s)", bin, pathList)
}

// sameStore compares two store URLs by what they address.
func sameStore(a, b string) bool {
	la, err1 := cloud.ParseURL(a)
	lb, err2 := cloud.ParseURL(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	if la.Scheme != lb.Scheme {
		return false
	}
	if la.Scheme == "file" {
		return path.Clean(la.Path) == path.Clean(lb.Path)
	}
	return la.Bucket == lb.Bucket && la.Prefix == lb.Prefix
}

// endpointHost reduces an endpoint (URL or host:port) to its host:port.
func endpointHost(e string) string {
	e = strings.TrimSpace(e)
	if e == "" {
		return ""
	}
	if !strings.Contains(e, "://") {
		e = "http://" + e
	}
	u, err := url.Parse(e)
	if err != nil {
		return e
	}
	return strings.ToLower(u.Host)
}

// checkArchiveCommand reports what archive_command does.
func checkArchiveCommand(rep *Report, ac archiveCmd, opts Options) {
	const name = "archive_command"
	fixCmd := "set archive_command = '/path/to/walvault wal-push %p' (with its store in a --config file or in the server's environment) and reload PostgreSQL"
	switch {
	case !ac.calls:
		rep.add(name, Fail, ac.why, fixCmd)
		return
	case !ac.hasP:
		rep.add(name, Fail, "archive_command runs walvault wal-push without %p (the path of the file to archive)", fixCmd)
		return
	case ac.binaryProblem != "":
		rep.add(name, Fail, ac.binaryProblem, "use the absolute path of the walvault binary in archive_command, readable and executable by the server's user")
		return
	case !ac.set.Store.Known:
		rep.add(name, Warn, "archive_command runs walvault wal-push, but cannot tell which store it reaches: "+ac.set.Store.Why,
			"the segment switch check below shows whether the WAL reaches this store")
		return
	case ac.set.Store.Value == "" && ac.client:
		rep.add(name, Fail, "archive_command runs walvault-wal push, whose fallback when no agent answers (walvault wal-push with the same flags) has no store (no --store, WALVAULT_STORE or config file with 'store:'): with the agent down, every segment fails",
			"keep walvault-wal, and give its fallback the store: --config=/etc/walvault/walvault.yaml in archive_command (walvault-wal passes it on), or WALVAULT_CONFIG / WALVAULT_STORE in the server's environment; then reload PostgreSQL")
		return
	case ac.set.Store.Value == "":
		rep.add(name, Fail, "archive_command runs walvault wal-push with no store (no --store, WALVAULT_STORE or config file with 'store:')", fixCmd)
		return
	case !sameStore(ac.set.Store.Value, opts.StoreURL):
		rep.add(name, Fail, fmt.Sprintf("archive_command archives to %s (from %s), but this check uses %s", cloud.Redact(ac.set.Store.Value), ac.set.Store.From, cloud.Redact(opts.StoreURL)),
			"give archive_command and walvault's other commands the same store (one --config file for all is simplest), then reload PostgreSQL")
		return
	}
	loc, _ := cloud.ParseURL(opts.StoreURL)
	detail := fmt.Sprintf("runs %s wal-push %%p; store %s (from %s)", ac.binary, cloud.Redact(ac.set.Store.Value), ac.set.Store.From)
	if ac.client {
		detail = fmt.Sprintf("runs %s push %%p (the agent's client); its fallback, walvault wal-push when no agent answers, has store %s (from %s)", ac.binary, cloud.Redact(ac.set.Store.Value), ac.set.Store.From)
	}
	if loc.Scheme != "file" {
		switch {
		case !ac.set.Endpoint.Known:
			detail += "; its endpoint cannot be seen: " + ac.set.Endpoint.Why
		case endpointHost(ac.set.Endpoint.Value) != endpointHost(opts.Endpoint):
			rep.add(name, Fail, fmt.Sprintf("archive_command reaches %s at endpoint %s (from %s), this check at %s: the same bucket name on two endpoints is two stores",
				cloud.Redact(ac.set.Store.Value), orDefault(cloud.Redact(ac.set.Endpoint.Value)), ac.set.Endpoint.From, orDefault(cloud.Redact(opts.Endpoint))),
				"give both the same endpoint (--s3-endpoint / --gcs-endpoint / --azure-endpoint, or the SDK's environment variables)")
			return
		case ac.set.Endpoint.Value != "":
			detail += fmt.Sprintf("; endpoint %s (from %s)", cloud.Redact(ac.set.Endpoint.Value), ac.set.Endpoint.From)
		}
	}
	rep.add(name, OK, detail+": the store this check uses", "")
}

func orDefault(s string) string {
	if s == "" {
		return "(the default)"
	}
	return s
}
