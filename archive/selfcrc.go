package archive

import "strings"

// SelfChecked says whether a data directory file (a manifest path) ends
// with a CRC-32C of the bytes before it, followed only by fixed padding:
// global/pg_control, every pg_filenode.map, pg_twophase's state files and
// pg_logical/replorigin_checkpoint. The CRC-32C of such a whole file is
// the same constant whatever it holds (a CRC appended to its message
// leaves a fixed residue), so two of them of one size can never be told
// apart by CRC-32C: whoever compares files by it must read these whole.
func SelfChecked(p string) bool {
	switch {
	case p == "global/pg_control", p == "pg_logical/replorigin_checkpoint":
		return true
	case p == "pg_filenode.map" || strings.HasSuffix(p, "/pg_filenode.map"):
		return true
	case strings.HasPrefix(p, "pg_twophase/"):
		return true
	}
	return false
}
