// Package repo is the bucket as walvault lays it out: object keys,
// cluster.json, backup manifests, one catalog of backups and WAL read once
// per command, and the object layer every command stores and reads
// through (encode + digests on the way in; verify + decode, bounded, on
// the way out). It knows nothing of PostgreSQL processes.
package repo

import (
	"fmt"

	"filippo.io/age"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/archive/codec"
	"github.com/walvault/walvault/cloud"
	"github.com/walvault/walvault/crypto"
)

// The bucket layout, relative to the store URL's prefix:
//
//	cluster.json                                  which cluster owns this prefix (written once)
//	wal/<timeline><log>/<segment>                 WAL segments, .partial and .backup files,
//	                                              256 per directory with 16 MiB segments
//	wal/history/<timeline>.history                timeline history files
//	backups/<name>/part-NNNNN                     base backup tar parts
//	backups/<name>/manifest.json                  written last: the backup exists once it does
//	backups/<name>/deleting.json                  written first by delete: an interrupted delete
//
// Object keys carry no compression or encryption suffix: objects describe
// themselves, so one WAL name always maps to one key.
const (
	ClusterKey    = "cluster.json"
	WALPrefix     = "wal/"
	HistoryPrefix = "wal/history/"
	BackupPrefix  = "backups/"
	// ManifestFile is the object that makes a backup exist. It is written
	// last.
	ManifestFile = "manifest.json"
	// TombstoneFile marks a backup folder whose deletion has begun: once
	// the manifest is gone, what remains is garbage to finish deleting.
	TombstoneFile = "deleting.json"
)

// Metadata keys stored with every object.
const (
	MetaSHA256 = "walvault-sha256" // hex SHA-256 of the raw (plain) content
	MetaSize   = "walvault-size"   // raw size in bytes
	MetaProof  = "walvault-proof"  // base64 Ed25519 signature over key, SHA-256 and size
	MetaSigner = "walvault-signer" // ID of the signing key (its verify key's)

	// WAL objects written since walvault 0.x state their content by the
	// encoded stream instead of MetaSHA256 (see codec.NewWriterTap): hex
	// SHA-256 of the compressed bytes before encryption, and the CRC-32C
	// (Castagnoli, 8 hex digits) of the plain bytes. Their proof (v2) signs
	// the key, both and the size.
	MetaEncodedSHA256 = "walvault-encoded-sha256"
	MetaCRC32C        = "walvault-crc32c"

	// MetaCluster is the system identifier of the cluster an object was
	// written for. A proof over it (v3) binds the object to that cluster:
	// an object copied from another cluster's prefix, signed with the same
	// key, is refused.
	MetaCluster = "walvault-cluster"
)

// WALKey is the store key of a pg_wal file.
func WALKey(f archive.WALFile) string {
	if f.Kind == archive.KindHistory {
		return HistoryPrefix + f.Name
	}
	return fmt.Sprintf("%s%s/%s", WALPrefix, f.Name[:16], f.Name)
}

// BackupKey is the store key of one object of a backup.
func BackupKey(name, file string) string { return BackupPrefix + name + "/" + file }

// PartName is the name of a backup's part idx.
func PartName(idx int) string { return fmt.Sprintf("part-%05d", idx) }

// Repo is the archive in one store: where objects are and how they are
// encoded and decoded. Every command works on one.
type Repo struct {
	Store cloud.Store
	Codec codec.Settings
	// Identities decrypt; empty when the node only pushes.
	Identities []age.Identity
	// Sign proves that objects come from this database host (nil: objects
	// are written without proof, which readers refuse by default).
	Sign *crypto.SigningKey
	// Verify checks the proof of what is read.
	Verify []crypto.VerifyKey
	// AllowUnsigned reads objects without a proof (archives written before
	// walvault signed objects); whether to check is never decided by
	// anything stored in the bucket.
	AllowUnsigned bool
	// AllowUnencrypted reads data objects that are not encrypted although
	// an identity is configured.
	AllowUnencrypted bool
	// Cluster is the system identifier of the cluster this archive
	// belongs to: written into every proof, and required of every proof
	// that names one ("" : not known yet; writers must set it, readers set
	// it from the authenticated cluster.json, or wal-fetch from the
	// pg_control of the data directory it restores into).
	Cluster string
	// RefusesSecondCreate: the store was seen refusing to create an object
	// that exists (EnsureCluster's probe, cached per store), so a write
	// with PutOptions.IfAbsent can never replace one and needs no look
	// before it. False when not known.
	RefusesSecondCreate bool
}
