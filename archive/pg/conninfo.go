package pg

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/walvault/walvault/archive"
)

// PostgreSQL's client tools (pg_dump, pg_restore, psql) take the
// connection settings walvault was given. A password in them must not go
// on their command line, which every local user can read in
// /proc/<pid>/cmdline: ToolConn takes it out of the connection string and
// hands it over in the tools' environment instead (PGPASSWORD), which only
// the same user and root can read.

// ToolConn splits dsn, a libpq connection string ("host=... password=...")
// or URI ("postgresql://user:password@host/db?password=..."), into what may
// go on a command line and the environment entries that carry the
// password (none when dsn has none). An empty dsn stays empty.
func ToolConn(dsn string) (conn string, env []string, err error) {
	conn, pw, found, err := splitPassword(dsn)
	if err != nil {
		return "", nil, fmt.Errorf("%w: the connection settings cannot be read to keep their password off the tools' command line: %w (give the password in PGPASSWORD or ~/.pgpass instead)", archive.ErrBadInput, err)
	}
	if found {
		env = []string{"PGPASSWORD=" + pw}
	}
	return conn, env, nil
}

func splitPassword(dsn string) (conn, pw string, found bool, err error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return splitURIPassword(dsn)
	}
	return splitKVPassword(dsn)
}

// splitURIPassword removes the password from a URI's user info and its
// password parameter. Hosts are left as written (a list of them is not
// something net/url parses).
func splitURIPassword(dsn string) (conn, pw string, found bool, err error) {
	scheme, rest, _ := strings.Cut(dsn, "://")
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		user, hosts := authority[:at], authority[at+1:]
		if name, p, ok := strings.Cut(user, ":"); ok {
			if pw, err = url.PathUnescape(p); err != nil {
				return "", "", false, errors.New("the password in the URI is not validly escaped")
			}
			found = true
			user = name
		}
		authority = user + "@" + hosts
	}
	path, query, hasQuery := strings.Cut(tail, "?")
	if hasQuery {
		var kept []string
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if k == "password" {
				if pw, err = url.QueryUnescape(v); err != nil {
					return "", "", false, errors.New("the password parameter of the URI is not validly escaped")
				}
				found = true
				continue
			}
			kept = append(kept, kv)
		}
		query = strings.Join(kept, "&")
	}
	conn = scheme + "://" + authority + path
	if query != "" {
		conn += "?" + query
	}
	return conn, pw, found, nil
}

// splitKVPassword parses keyword = value pairs as libpq does (values
// single-quoted with \' and \\ escapes, or bare up to whitespace) and
// writes them back without the password, every value quoted.
func splitKVPassword(dsn string) (conn, pw string, found bool, err error) {
	var out []string
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			break
		}
		// Errors name no part of the text: it may hold the password.
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return "", "", false, fmt.Errorf("setting %d is not keyword = value (libpq's format) and the text is not a postgresql:// URI", len(out)+1)
		}
		key := strings.TrimRight(s[:eq], " \t\n\r\f\v")
		if strings.ContainsAny(key, " \t\n\r\f\v'\\") {
			return "", "", false, fmt.Errorf("setting %d has no valid keyword", len(out)+1)
		}
		s = strings.TrimLeft(s[eq+1:], " \t\n\r\f\v")
		var val string
		if val, s, err = kvValue(s); err != nil {
			return "", "", false, err
		}
		if key == "password" {
			pw, found = val, true
			continue
		}
		out = append(out, key+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(val)+"'")
	}
	return strings.Join(out, " "), pw, found, nil
}

// kvValue reads one value at the start of s and returns it with the rest.
func kvValue(s string) (string, string, error) {
	var b strings.Builder
	if strings.HasPrefix(s, "'") {
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\' && i+1 < len(s):
				i++
				b.WriteByte(s[i])
			case c == '\'':
				return b.String(), s[i+1:], nil
			default:
				b.WriteByte(c)
			}
		}
		return "", "", errors.New("a quoted value is not closed")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case strings.IndexByte(" \t\n\r\f\v", c) >= 0:
			return b.String(), s[i:], nil
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "", nil
}
