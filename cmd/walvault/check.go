//go:build !walvault_front

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/check"
	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

func init() {
	register(checkCommands)
}

func checkCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:  "check",
			Usage: "check the set-up: PostgreSQL's archiving settings, archive_command, the store, the keys, and a real segment reaching the store",
			Description: "Connects like psql (PGHOST, ... or --dbname), to the store and to each copy-store (probed alike; with\n" +
				"lock-days, that the bucket or container can lock objects). Prints each check as ok, FAIL (with the\n" +
				"fix), warn (could not tell) or skip. Exit 7 if any check FAILs.",
			Flags: join(storeFlags(), copyStoreFlags(), lockFlags(), []cli.Flag{
				stringFlag("dbname", "libpq connection string or URI (default: the PG* environment variables)", ""),
				sliceFlag("recipient", "age public key or recipients file archive_command encrypts to, when check cannot see it"),
				durationFlag("timeout", "how long to wait for the switched segment to reach the store", "60s"),
				boolFlag("no-switch", "do not force a WAL segment switch"),
				boolFlag("json", "print the results as JSON"),
			}),
			Action: checkCmd,
		},
	}
}

func checkCmd(c *cli.Context) error {
	if err := wantArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	timeout, err := durationValue(c, "timeout")
	if err != nil {
		return err
	}
	if err := setupLogging(c); err != nil {
		return err
	}
	recips, err := crypto.ParseRecipients(c.StringSlice("recipient"))
	if err != nil {
		return err
	}
	r := &repo.Repo{}
	if p := c.String("identity-file"); p != "" {
		ids, err := crypto.LoadIdentities(p, c.Bool("allow-insecure-identity"))
		if err != nil {
			return err
		}
		r.Identities = ids
	}
	// check reports a missing verify key as a warning rather than refuse.
	if r.Verify, err = crypto.ParseVerifyKeys(c.StringSlice("verify-key")); err != nil {
		return err
	}
	storeURL := c.String("store")
	opts := check.Options{DSN: c.String("dbname"), Timeout: timeout, NoSwitch: c.Bool("no-switch"), StoreURL: storeURL,
		Recipients: recips, Resolve: walPushResolver(),
		ParseRecipients: func(s []string) ([]age.Recipient, error) { return crypto.ParseRecipients(s) }}
	if _, err := cloud.ParseURL(storeURL); err != nil {
		return err
	}
	st, err := cloud.Open(c.Context, storeURL, storeOptions(c))
	if err != nil {
		if errors.Is(err, cloud.ErrBadURL) {
			return err
		}
		opts.StoreErr = err
	} else {
		r.Store = st
		defer cloud.Close(st)
	}
	opts.Endpoint = cloud.Endpoint(storeURL, backendValues(c), os.Getenv)
	if opts.Lock, err = lockOf(c); err != nil {
		return err
	}
	specs, err := copyStores(c)
	if err != nil {
		return err
	}
	for _, s := range specs {
		cs := check.CopyStore{URL: s.URL, Lock: s.Lock}
		if cs.Store, cs.Err = s.open(c, false); cs.Err == nil {
			defer cloud.Close(cs.Store)
		} else if errors.Is(cs.Err, cloud.ErrBadURL) {
			return fmt.Errorf("copy-store %s: %w", cloud.Redact(s.URL), cs.Err)
		}
		opts.CopyStores = append(opts.CopyStores, cs)
	}
	rep := check.Run(c.Context, r, opts)
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, rep); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
		for _, res := range rep.Results {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", res.Status, res.Name, res.Detail)
			if res.Fix != "" && res.Status != check.OK {
				fmt.Fprintf(tw, "\t\tfix: %s\n", res.Fix)
			}
		}
		_ = tw.Flush()
	}
	if rep.Failed > 0 {
		var names []string
		for _, res := range rep.Results {
			if res.Status == check.Fail {
				names = append(names, res.Name)
			}
		}
		return fmt.Errorf("%w: %d check(s) failed: %s", archive.ErrVerifyFailed, rep.Failed, strings.Join(names, ", "))
	}
	if !c.Bool("json") {
		fmt.Fprintf(c.App.Writer, "check: all %d checks passed or were skipped\n", len(rep.Results))
	}
	return nil
}
