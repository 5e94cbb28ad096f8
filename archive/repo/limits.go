package repo

// Caps on what is decoded from the store (Want.MaxSize): anyone may have
// written the bucket, so every read stops at a size the legitimate object
// can never reach, while streaming, and a decompression bomb stops there.
const (
	// MaxHistoryBytes bounds a timeline history file: one short line per
	// timeline switch, so thousands of switches stay far below it.
	MaxHistoryBytes = 1 << 20
	// MaxBackupFileBytes bounds a .backup file: a dozen lines of
	// backup_label, one of them the user's label.
	MaxBackupFileBytes = 64 << 10
	// MaxManifestBytes bounds a manifest.json. Its size grows with the file
	// list, one line per file: about 130 bytes for a typical relation
	// segment, 300 with long tablespace paths. A 10 TB cluster with 2
	// million files is thus about 600 MB at worst; 1 GiB leaves room for
	// 3.5 million such lines (7 million typical ones), while bounding
	// what a restore or verify can be made to read.
	MaxManifestBytes = 1 << 30
	// MaxManifestHeadBytes bounds everything before the file list (the
	// summary backup-list reads of every backup): labels and maps up to a
	// few MiB, and the part list, about 250 bytes a part, so some 250,000
	// parts (250 TB at the default 1 GiB part size).
	MaxManifestHeadBytes = 64 << 20
	// MaxClusterBytes bounds cluster.json, a few short fields.
	MaxClusterBytes = 64 << 10
	// MaxWALSegmentBytes is PostgreSQL's largest WAL segment size, the cap
	// on decoded WAL when cluster.json does not record the cluster's.
	MaxWALSegmentBytes = 1 << 30
)
