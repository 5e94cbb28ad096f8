package archive

import (
	"fmt"

	"filippo.io/age"

	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
)

// The bucket layout, relative to the store URL's prefix:
//
//	cluster.json                                  which cluster owns this prefix (written once)
//	wal/<timeline><log>/<segment>                 WAL segments, .partial and .backup files,
//	                                              256 per directory with 16 MiB segments
//	wal/history/<timeline>.history                timeline history files
//	backups/<name>/part-NNNNN                     base backup tar parts
//	backups/<name>/manifest.json                  written last: the backup exists once it does
//
// Object keys carry no compression or encryption suffix: objects describe
// themselves, so one WAL name always maps to one key.
const (
	ClusterKey    = "cluster.json"
	WALPrefix     = "wal/"
	HistoryPrefix = "wal/history/"
	BackupPrefix  = "backups/"
)

// Metadata keys stored with every object.
const (
	MetaSHA256 = "walvault-sha256" // hex SHA-256 of the raw (plain) content
	MetaSize   = "walvault-size"   // raw size in bytes
)

// WALKey is the store key of a pg_wal file.
func WALKey(f WALFile) string {
	if f.Kind == KindHistory {
		return HistoryPrefix + f.Name
	}
	return fmt.Sprintf("%s%s/%s", WALPrefix, f.Name[:16], f.Name)
}

// Config is what every command needs to reach and read the archive.
type Config struct {
	Store cloud.Store
	Codec codec.Settings
	// Identities decrypt; empty when the node only pushes.
	Identities []age.Identity
}
