package archive

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
// walvault wal-push, and the settings that walvault would see, resolved as
// walvault resolves them (flag, then environment, then config file).
type archiveCmd struct {
	calls  bool
	why    string // when !calls
	binary string
	hasP   bool
	// binaryProblem: the binary cannot be found where the server looks.
	binaryProblem string

	store      setting
	endpoint   setting
	recipients []string
	// recipientsKnown: the recipients (or their absence) are certain.
	recipientsKnown bool
	recipientsFrom  string
	// unknown says what check cannot see, when a setting is uncertain.
	unknown string
}

// setting is one resolved value and where it came from.
type setting struct {
	value string
	from  string
	known bool   // false: it may come from somewhere check cannot see
	why   string // when !known
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

// walvault's flags that take no value.
var boolFlags = map[string]bool{"s3-path-style": true, "allow-insecure-identity": true, "help": true, "h": true}

// resolveArchiveCommand parses archive_command (as PostgreSQL reports it;
// "library:NAME" for archive_library) and resolves the settings the
// walvault it runs would use. env is the server's environment, nil when it
// cannot be seen (envWhy says why).
func resolveArchiveCommand(cmd string, env map[string]string, envWhy string, readConfig func(string) (map[string][]string, error)) archiveCmd {
	var ac archiveCmd
	if lib, ok := strings.CutPrefix(cmd, "library:"); ok {
		ac.why = fmt.Sprintf("archive_library = %q is set: PostgreSQL uses it instead of archive_command", lib)
		return ac
	}
	if strings.TrimSpace(cmd) == "" {
		ac.why = "archive_command is empty"
		return ac
	}
	toks := shellSplit(cmd)
	at := -1
	for i := 0; i+1 < len(toks); i++ {
		if !toks[i].op && strings.HasPrefix(filepath.Base(toks[i].text), "walvault") && toks[i+1].text == "wal-push" && !toks[i+1].op {
			at = i
			break
		}
	}
	if at < 0 {
		ac.why = "archive_command does not run walvault wal-push"
		return ac
	}
	ac.calls, ac.binary = true, toks[at].text
	assign := map[string]string{}
	for j := at - 1; j >= 0 && !toks[j].op; j-- {
		if k, v, ok := strings.Cut(toks[j].text, "="); ok && isAssignment(toks[j].text) {
			assign[k] = v
		} else if toks[j].text != "env" && toks[j].text != "exec" {
			break
		}
	}
	flags := map[string][]string{}
	var args []string
	for _, t := range toks[at+2:] {
		if t.op {
			break
		}
		args = append(args, t.text)
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			for _, p := range args[i+1:] {
				ac.hasP = ac.hasP || strings.Contains(p, "%p")
			}
			break
		}
		if len(a) < 2 || a[0] != '-' {
			ac.hasP = ac.hasP || strings.Contains(a, "%p")
			continue
		}
		name := strings.TrimLeft(a, "-")
		val, has := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, has = k, v, true
		}
		if !has && !boolFlags[name] && i+1 < len(args) {
			val = args[i+1]
			i++
		}
		flags[name] = append(flags[name], val)
	}

	// The config file: --config, else WALVAULT_CONFIG.
	var cfgPath, cfgFrom string
	var cfgVals map[string][]string
	var cfgErr error
	switch {
	case len(flags["config"]) > 0:
		cfgPath, cfgFrom = flags["config"][len(flags["config"])-1], "--config in archive_command"
	case assign["WALVAULT_CONFIG"] != "":
		cfgPath, cfgFrom = assign["WALVAULT_CONFIG"], "WALVAULT_CONFIG in archive_command"
	case env != nil && env["WALVAULT_CONFIG"] != "":
		cfgPath, cfgFrom = env["WALVAULT_CONFIG"], "WALVAULT_CONFIG in the server's environment"
	}
	if cfgPath != "" {
		if !filepath.IsAbs(cfgPath) {
			cfgErr = fmt.Errorf("the path is relative, so it depends on the server's working directory")
		} else if readConfig == nil {
			cfgErr = fmt.Errorf("no config reader")
		} else {
			cfgVals, cfgErr = readConfig(cfgPath)
		}
	}
	lookupEnv := func(k string) (string, string, bool) {
		if v, ok := assign[k]; ok {
			return v, k + " in archive_command", true
		}
		if env != nil {
			if v, ok := env[k]; ok && v != "" {
				return v, k + " in the server's environment", true
			}
		}
		return "", "", false
	}
	resolve := func(key string) ([]string, setting) {
		if v := flags[key]; len(v) > 0 {
			return v, setting{value: v[len(v)-1], from: "--" + key + " in archive_command", known: true}
		}
		envKey := "WALVAULT_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
		if v, from, ok := lookupEnv(envKey); ok {
			return []string{v}, setting{value: v, from: from, known: true}
		}
		if cfgPath != "" {
			if cfgErr != nil {
				return nil, setting{why: fmt.Sprintf("config file %s (%s) cannot be read here: %v", cfgPath, cfgFrom, cfgErr)}
			}
			if v := cfgVals[key]; len(v) > 0 {
				s := setting{value: v[len(v)-1], from: "config file " + cfgPath, known: true}
				if env == nil {
					s.from += " (unless the server's environment sets " + envKey + ", which check cannot see)"
				}
				return v, s
			}
		}
		if env == nil {
			return nil, setting{why: "it would come from the server's environment (" + envKey + " or WALVAULT_CONFIG), which check cannot see: " + envWhy}
		}
		return nil, setting{known: true, from: "nowhere"}
	}
	_, ac.store = resolve("store")
	ac.unknown = ac.store.why
	scheme := ""
	if loc, err := cloud.ParseURL(ac.store.value); err == nil {
		scheme = loc.Scheme
	}
	var ep setting
	switch scheme {
	case "s3":
		_, ep = resolve("s3-endpoint")
		for _, k := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
			if ep.known && ep.value == "" {
				if v, from, ok := lookupEnv(k); ok {
					ep = setting{value: v, from: from, known: true}
				}
			}
		}
	case "gs":
		_, ep = resolve("gcs-endpoint")
		if v, from, ok := lookupEnv("STORAGE_EMULATOR_HOST"); ep.known && ep.value == "" && ok {
			ep = setting{value: v, from: from, known: true}
		}
	case "azure":
		_, ep = resolve("azure-endpoint")
		if v, from, ok := lookupEnv("AZURE_STORAGE_CONNECTION_STRING"); ep.known && ep.value == "" && ok {
			ep = setting{value: blobEndpoint(v), from: from, known: true}
		}
	}
	ac.endpoint = ep
	rec, rs := resolve("recipient")
	ac.recipientsKnown, ac.recipientsFrom = rs.known, rs.from
	if rs.known {
		ac.recipients = rec
	} else if ac.unknown == "" {
		ac.unknown = rs.why
	}
	if env != nil {
		ac.binaryProblem = findBinary(ac.binary, env["PATH"])
	}
	return ac
}

// blobEndpoint takes only BlobEndpoint from an Azure connection string
// (the rest holds the account key).
func blobEndpoint(conn string) string {
	for _, part := range strings.Split(conn, ";") {
		if v, ok := strings.CutPrefix(part, "BlobEndpoint="); ok {
			return v
		}
	}
	return ""
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

// EffectiveEndpoint is the endpoint a store URL's backend uses given its
// flag value and the environment, as check compares them.
func EffectiveEndpoint(storeURL, flag string, getenv func(string) string) string {
	loc, err := cloud.ParseURL(storeURL)
	if err != nil || flag != "" {
		return flag
	}
	var keys []string
	switch loc.Scheme {
	case "s3":
		keys = []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"}
	case "gs":
		keys = []string{"STORAGE_EMULATOR_HOST"}
	case "azure":
		return blobEndpoint(getenv("AZURE_STORAGE_CONNECTION_STRING"))
	}
	for _, k := range keys {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// checkArchiveCommand reports what archive_command does.
func checkArchiveCommand(rep *CheckReport, ac archiveCmd, opts CheckOptions) {
	const name = "archive_command"
	fixCmd := "set archive_command = '/path/to/walvault wal-push %p' (with its store in a --config file or in the server's environment) and reload PostgreSQL"
	switch {
	case !ac.calls:
		rep.add(name, CheckFail, ac.why, fixCmd)
		return
	case !ac.hasP:
		rep.add(name, CheckFail, "archive_command runs walvault wal-push without %p (the path of the file to archive)", fixCmd)
		return
	case ac.binaryProblem != "":
		rep.add(name, CheckFail, ac.binaryProblem, "use the absolute path of the walvault binary in archive_command, readable and executable by the server's user")
		return
	case !ac.store.known:
		rep.add(name, CheckWarn, "archive_command runs walvault wal-push, but cannot tell which store it reaches: "+ac.store.why,
			"the segment switch check below shows whether the WAL reaches this store")
		return
	case ac.store.value == "":
		rep.add(name, CheckFail, "archive_command runs walvault wal-push with no store (no --store, WALVAULT_STORE or config file with 'store:')", fixCmd)
		return
	case !sameStore(ac.store.value, opts.StoreURL):
		rep.add(name, CheckFail, fmt.Sprintf("archive_command archives to %s (from %s), but this check uses %s", cloud.Redact(ac.store.value), ac.store.from, cloud.Redact(opts.StoreURL)),
			"give archive_command and walvault's other commands the same store (one --config file for all is simplest), then reload PostgreSQL")
		return
	}
	loc, _ := cloud.ParseURL(opts.StoreURL)
	detail := fmt.Sprintf("runs %s wal-push %%p; store %s (from %s)", ac.binary, cloud.Redact(ac.store.value), ac.store.from)
	if loc.Scheme != "file" {
		switch {
		case !ac.endpoint.known:
			detail += "; its endpoint cannot be seen: " + ac.endpoint.why
		case endpointHost(ac.endpoint.value) != endpointHost(opts.Endpoint):
			rep.add(name, CheckFail, fmt.Sprintf("archive_command reaches %s at endpoint %s (from %s), this check at %s: the same bucket name on two endpoints is two stores",
				cloud.Redact(ac.store.value), orDefault(cloud.Redact(ac.endpoint.value)), ac.endpoint.from, orDefault(cloud.Redact(opts.Endpoint))),
				"give both the same endpoint (--s3-endpoint / --gcs-endpoint / --azure-endpoint, or the SDK's environment variables)")
			return
		case ac.endpoint.value != "":
			detail += fmt.Sprintf("; endpoint %s (from %s)", cloud.Redact(ac.endpoint.value), ac.endpoint.from)
		}
	}
	rep.add(name, CheckOK, detail+": the store this check uses", "")
}

func orDefault(s string) string {
	if s == "" {
		return "(the default)"
	}
	return s
}
