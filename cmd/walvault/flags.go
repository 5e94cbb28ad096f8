package main

import (
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// Every setting is a flag, a WALVAULT_* environment variable, and a key of
// the same name in the optional YAML config file. Precedence: flag > env >
// file > default.

func envName(flag string) []string {
	return []string{"WALVAULT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

func stringFlag(name, usage, value string) cli.Flag {
	return altsrc.NewStringFlag(&cli.StringFlag{Name: name, Usage: usage, Value: value, EnvVars: envName(name)})
}

func intFlag(name, usage string, value int) cli.Flag {
	return altsrc.NewIntFlag(&cli.IntFlag{Name: name, Usage: usage, Value: value, EnvVars: envName(name)})
}

func boolFlag(name, usage string) cli.Flag {
	return altsrc.NewBoolFlag(&cli.BoolFlag{Name: name, Usage: usage, EnvVars: envName(name)})
}

func sliceFlag(name, usage string) cli.Flag {
	return altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: name, Usage: usage, EnvVars: envName(name)})
}

// configFlag is not itself read from the file.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "YAML file with settings (keys are flag names)", EnvVars: []string{"WALVAULT_CONFIG"}}
}

// storeFlags reach and read the archive; every archive command takes them.
func storeFlags() []cli.Flag {
	return append([]cli.Flag{
		configFlag(),
		stringFlag("store", "where the archive lives: file:///path, s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix", ""),
		stringFlag("identity-file", "age identity (private key) file used to decrypt", ""),
		boolFlag("allow-insecure-identity", "accept an identity file readable by group or others"),
		stringFlag("log-level", "debug, info, warn or error", "info"),
		durationFlag("io-timeout", "give up on a store connection on which no data moves for this long", "60s"),
		stringFlag("s3-endpoint", "S3-compatible endpoint URL (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS)", ""),
		boolFlag("s3-path-style", "path-style S3 addressing (most S3-compatible servers need it)"),
		stringFlag("s3-region", "S3 region (default: AWS_REGION or us-east-1)", ""),
		stringFlag("s3-storage-class", "S3 storage class for new objects (e.g. STANDARD_IA)", ""),
		stringFlag("s3-sse-kms-key-id", "encrypt new S3 objects server-side with this KMS key", ""),
		stringFlag("gcs-endpoint", "GCS JSON API endpoint (emulators; STORAGE_EMULATOR_HOST also works)", ""),
		stringFlag("gcs-storage-class", "GCS storage class for new objects (e.g. NEARLINE)", ""),
		stringFlag("gcs-kms-key-name", "GCS Cloud KMS key for new objects", ""),
		stringFlag("azure-endpoint", "Azure Blob service URL (Azurite, sovereign clouds)", ""),
		stringFlag("azure-access-tier", "Azure access tier for new blobs (Hot, Cool, Cold, Archive)", ""),
		stringFlag("azure-encryption-scope", "Azure encryption scope for new blobs", ""),
	}, authFlags()...)
}

// writeFlags shape what is written.
func writeFlags() []cli.Flag {
	return []cli.Flag{
		stringFlag("compression", "lz4, zstd or none", "lz4"),
		intFlag("compression-level", "0 for the algorithm's default; lz4 1-9, zstd 1-22", 0),
		sliceFlag("recipient", "age public key (age1...) or recipients file to encrypt to; repeatable"),
		intFlag("upload-concurrency", "parallel uploads", 4),
		signingKeyFlag(),
	}
}

func join(sets ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, s := range sets {
		out = append(out, s...)
	}
	return out
}

func durationFlag(name, usage string, value string) cli.Flag {
	return stringFlag(name, usage+" (e.g. 30s, 5m)", value)
}
