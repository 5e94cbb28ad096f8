package cloud

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// A backend is one package: it registers a Backend from its init, and a
// program has the backends whose packages it imports (cloud/all imports
// every one; code that needs only the Store interface imports none and
// links no SDK). Everything else walvault knows of a backend comes from
// its Backend: the flags, WALVAULT_* variables and config file keys of its
// settings, which of them carry secrets, which restore_command repeats,
// where its endpoint comes from, and how its stores are told apart.

// Backend describes one store backend.
type Backend struct {
	// Schemes are the URL schemes it serves: the first is its name, the
	// others aliases (azblob:// for azure://).
	Schemes []string
	// Settings are its own settings, in the order help lists them.
	Settings []Setting
	// Open opens the store loc names, with the values of its settings in
	// opts.Settings. It builds a client and contacts nothing (a missing
	// credential or bucket shows on the first request).
	Open func(ctx context.Context, loc Location, opts Options) (Store, error)
	// EnvEndpoint is where the SDK reaches the store when the endpoint
	// setting is empty: what it finds in the environment (read through
	// getenv) and the variable it came from. nil, or "" for both, when the
	// service's own default applies.
	EnvEndpoint func(getenv func(string) string) (endpoint, from string)
}

// Name is the backend's name, its first scheme.
func (b Backend) Name() string { return b.Schemes[0] }

// EndpointSetting is the name of the setting that names the endpoint, or
// "" when the backend has none.
func (b Backend) EndpointSetting() string {
	for _, s := range b.Settings {
		if s.Endpoint {
			return s.Name
		}
	}
	return ""
}

// Setting is one setting of a backend. Like every walvault setting it is a
// command-line flag (--Name), an environment variable (EnvVar) and a config
// file key (Name).
type Setting struct {
	Name string // lower case words joined by '-', starting with the backend's name: s3-endpoint
	Help string // one line for --help
	// Switch: a boolean flag, given without a value; "true" in Values when on.
	Switch bool
	// Secret: its value may carry credentials (user info, a token in the
	// query string), so it is never copied onto a command line that others
	// can read (restore_command), and is redacted where it is shown.
	Secret bool
	// Reading: reading the store needs it (where the store is and how it is
	// addressed), so restore_command repeats it for wal-fetch; options that
	// only shape new objects do not.
	Reading bool
	// Endpoint: it names the endpoint the store is reached through (at most
	// one per backend); when empty, EnvEndpoint applies.
	Endpoint bool
}

// EnvVar is the setting's environment variable: WALVAULT_ and its name in
// upper case, '-' as '_'. This is the one rule for every walvault setting.
func EnvVar(name string) string {
	return "WALVAULT_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Values are backend settings by name: "" is unset, a switch is on when
// its value parses as true.
type Values map[string]string

// Bool says whether the switch name is on.
func (v Values) Bool(name string) bool {
	b, _ := strconv.ParseBool(v[name])
	return b
}

var (
	registryMu sync.RWMutex
	registry   []Backend
)

// Register adds a backend; backends call it from init. A scheme already
// registered keeps its first backend (TestRegistry in cloud/all checks
// that none clash).
func Register(b Backend) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry = append(registry, b)
}

// Backends are the registered backends, by name.
func Backends() []Backend {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := slices.Clone(registry)
	slices.SortStableFunc(out, func(a, b Backend) int { return strings.Compare(a.Name(), b.Name()) })
	return out
}

// BackendOf is the backend that serves scheme.
func BackendOf(scheme string) (Backend, bool) {
	for _, b := range Backends() {
		if slices.Contains(b.Schemes, scheme) {
			return b, true
		}
	}
	return Backend{}, false
}

// Settings are every registered backend's settings, backend by backend.
func Settings() []Setting {
	var out []Setting
	for _, b := range Backends() {
		out = append(out, b.Settings...)
	}
	return out
}

func schemes() []string {
	var s []string
	for _, b := range Backends() {
		for _, sc := range b.Schemes {
			s = append(s, sc+"://")
		}
	}
	slices.Sort(s)
	return s
}

// Endpoint is where the store raw names is reached, given the values of
// the backend settings and the environment (getenv): its endpoint setting
// when set, else what its SDK finds in the environment. "" when the
// service's default applies, or raw names no registered backend.
func Endpoint(raw string, set Values, getenv func(string) string) string {
	loc, err := ParseURL(raw)
	if err != nil {
		return ""
	}
	b, ok := BackendOf(loc.Scheme)
	if !ok {
		return ""
	}
	if name := b.EndpointSetting(); name != "" && set[name] != "" {
		return set[name]
	}
	if b.EnvEndpoint == nil {
		return ""
	}
	ep, _ := b.EnvEndpoint(getenv)
	return ep
}

// Identity tells stores apart for markers and proofs: the store's name
// (scheme, bucket and prefix, as its String gives them) and the endpoint it
// is reached through (Endpoint), since the same bucket behind another
// endpoint is another store. An endpoint may carry credentials: hash the
// identity before writing it down.
func Identity(st Store, endpoint string) string {
	return st.String() + "\x00" + endpoint
}
