package check

// Which store, endpoint and recipients the walvault that archive_command
// runs would use is decided by walvault's settings table: flag names,
// environment variables, the config file, their precedence, and the SDKs'
// endpoint variables. The CLI owns that table, so check asks it through a
// Resolver instead of keeping a copy.

// Setting is one setting as the walvault archive_command runs would see
// it.
type Setting struct {
	// Value is the value that applies; Values every value of a repeatable
	// setting (recipients), Value being the last.
	Value  string
	Values []string
	// From says where the value comes from, for the report ("--store in
	// archive_command", "WALVAULT_STORE in the server's environment",
	// "config file /etc/walvault.yaml"; "nowhere" when it is certainly
	// unset).
	From string
	// Known is false when the value may come from somewhere check cannot
	// see; Why then says where and why.
	Known bool
	Why   string
}

// Resolved is what check needs of the settings of one walvault wal-push
// command line.
type Resolved struct {
	Store Setting
	// Endpoint is the endpoint of Store's scheme (flag, then the SDK's
	// environment variables); zero for file:// and unknown schemes.
	Endpoint   Setting
	Recipients Setting
	// Args are the positional arguments (what is not a flag or a flag's
	// value), where %p must be.
	Args []string
}

// Resolver resolves the settings walvault wal-push would use when run
// with args (its command line after "wal-push"), with the VAR=value
// assignments archive_command puts before it, in the server's environment
// env. env is nil when check cannot see it; envWhy then says why, for the
// settings that would come from it.
type Resolver func(args []string, assign, env map[string]string, envWhy string) Resolved

// cannotResolve is the resolver of a check given none: every setting is
// unknown.
func cannotResolve(args []string, _, _ map[string]string, _ string) Resolved {
	unknown := Setting{Why: "check was given no way to resolve walvault's settings"}
	return Resolved{Store: unknown, Endpoint: unknown, Recipients: unknown, Args: args}
}
