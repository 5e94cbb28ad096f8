package main

import (
	"github.com/urfave/cli/v2"

	"github.com/walvault/walvault/archive/repo"
	"github.com/walvault/walvault/crypto"
)

// access says what a command does with the archive, and so which keys it
// needs: readers check proofs (verify keys), writers make them (the
// signing key), decrypting readers also load the identity.
type access int

const (
	reads access = 1 << iota
	writes
	decrypts
)

// authFlags are the settings of the archive's authenticity, which every
// archive command takes.
func authFlags() []cli.Flag {
	return []cli.Flag{
		sliceFlag("verify-key", "public key (walvault-verify-1-...) or file of them that objects must be signed with; repeatable"),
		boolFlag("allow-unsigned", "read objects without a proof (archives written before walvault signed objects) and write without a signing key"),
		boolFlag("allow-unencrypted", "read data objects that are not encrypted although an identity is configured"),
	}
}

// signingKeyFlag is the database host's secret, for commands that write.
func signingKeyFlag() cli.Flag {
	return stringFlag("signing-key", "file holding the signing key (made by walvault keygen --signing-key) that proves objects come from this database host", "")
}

// loadKeys fills r's authenticity settings for a command that does a.
// Whether to check is never decided by anything in the bucket: without a
// key, only an explicit --allow-unsigned lets a command go on.
func loadKeys(c *cli.Context, r *repo.Repo, a access) error {
	r.AllowUnsigned, r.AllowUnencrypted = c.Bool("allow-unsigned"), c.Bool("allow-unencrypted")
	if a&writes != 0 {
		switch path := c.String("signing-key"); {
		case path != "":
			sk, err := crypto.LoadSigningKey(path, c.Bool("allow-insecure-identity"))
			if err != nil {
				return err
			}
			r.Sign = sk // what it signs, it can read back (Repo.verifyKeys)
		case !r.AllowUnsigned:
			return usageError("no signing key: give --signing-key (WALVAULT_SIGNING_KEY or 'signing-key:' in the config file; 'walvault keygen --signing-key FILE' makes one) so that restores can tell your objects from planted ones, or --allow-unsigned to write objects nobody can authenticate")
		}
	}
	if a&reads != 0 {
		keys, err := crypto.ParseVerifyKeys(c.StringSlice("verify-key"))
		if err != nil {
			return err
		}
		r.Verify = append(r.Verify, keys...)
		if len(r.Verify) == 0 && r.Sign == nil && !r.AllowUnsigned {
			return usageError("no verify key: give --verify-key (WALVAULT_VERIFY_KEY or 'verify-key:' in the config file; 'walvault keygen' printed it) to authenticate what is read from the store, or --allow-unsigned to read an archive written before walvault signed objects")
		}
	}
	return nil
}
