package main

import (
	"bytes"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"

	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// Store URLs and endpoints may carry credentials: user info
// (https://KEY:SECRET@host) or a query string (an Azure SAS token). They
// must not be copied where others read them: restore_command in
// postgresql.auto.conf (readable with the data directory, and backed up),
// log lines, error messages.

// carriesSecret tells whether a store URL or endpoint holds user info or a
// query string. Text that is not a URL with a host (host:port, or one that
// does not parse) counts when it has an '@' or a '?' anywhere.
func carriesSecret(v string) bool {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return strings.ContainsAny(v, "@?")
	}
	return u.User != nil || u.RawQuery != "" || u.ForceQuery
}

// redactURL is cloud.Redact, kept for the message scrubber.
func redactURL(raw string) string { return cloud.Redact(raw) }

// urlInText finds URLs in messages, up to a space or a quote.
var urlInText = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile("[A-Za-z][A-Za-z0-9+.-]*://[^\\s\"'<>`]+")
})

// scrubURLs redacts the credentials of every URL in a message.
func scrubURLs(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText().ReplaceAllStringFunc(s, redactURL)
}

// redactingWriter scrubs URLs in what is written to it: errors and log
// lines from the SDKs quote request URLs.
type redactingWriter struct{ w io.Writer }

func (r redactingWriter) Write(p []byte) (int, error) {
	if !bytes.Contains(p, []byte("://")) {
		return r.w.Write(p)
	}
	if _, err := io.WriteString(r.w, scrubURLs(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// redactedStderr wraps stderr unless it is a terminal: progress is drawn
// in place only on an *os.File (progressBar), and what appears on the
// user's own terminal is what they typed. Logs, cron mail and PostgreSQL's
// logging collector get the redacted text.
func redactedStderr(stderr io.Writer) io.Writer {
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return stderr
		}
	}
	return redactingWriter{w: stderr}
}

// secretSetting says whether a setting restore_command reaches the store
// with may carry credentials: the store URL, and the backends' settings
// marked Secret.
func secretSetting(name string) bool {
	return name == "store" || slices.ContainsFunc(cloud.Settings(), func(s cloud.Setting) bool { return s.Name == name && s.Secret })
}

// secretFromConfig checks a setting that carries credentials: restore_command
// may only name the config file it comes from (--config=ABS), so it must be
// given there, and only there.
func secretFromConfig(c *cli.Context, name, value string) error {
	cf := c.String("config")
	if cf == "" {
		return usageError("--%s %s carries credentials (user info or a query string); restore_command would copy them into postgresql.auto.conf, which anyone who can read the data directory or its backups can read: put '%s: ...' in a config file given with --config, or pass the credentials in the server's environment",
			name, redactURL(value), name)
	}
	src, err := altsrc.NewYamlSourceFromFile(cf)
	if err != nil {
		return usageError("config file %s: %s", cf, oneLine(err.Error()))
	}
	if inFile, err := src.String(name); err != nil || inFile != value {
		return usageError("--%s %s carries credentials, and restore_command names only the config file %s, which does not set it to that: put '%s: ...' there instead of on the command line or in the environment",
			name, redactURL(value), cf, name)
	}
	return nil
}

// verifyKeyArgs are the --verify-key arguments of restore_command: keys
// as they are (they are public), files by absolute path (restore_command
// runs in the data directory).
func verifyKeyArgs(specs []string, abs func(string) (string, error)) ([]string, error) {
	var out []string
	for _, spec := range specs {
		for _, s := range strings.Split(spec, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			keys, err := crypto.ParseVerifyKeys([]string{s}) // refuses a signing key
			if err != nil {
				return nil, err
			}
			if len(keys) == 1 && keys[0].String() == s {
				out = append(out, "--verify-key="+s)
				continue
			}
			a, err := abs(s)
			if err != nil {
				return nil, err
			}
			out = append(out, "--verify-key="+a)
		}
	}
	return out, nil
}
