// Package archive holds what every walvault command shares: WAL file names
// and LSN arithmetic, timeline history, the error sentinels the CLI maps to
// exit codes, and the progress interface. It imports no storage or server
// code, so its parsers build and fuzz in seconds; the commands live in the
// packages below it, over archive/repo (the bucket) and archive/pg (the
// server).
package archive

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a WAL location.
type LSN uint64

// ParseLSN reads PostgreSQL's "X/Y" notation.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("LSN %q: expected X/Y in hexadecimal", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("LSN %q: expected X/Y in hexadecimal", s)
	}
	return LSN(h<<32 | l), nil
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) } // #nosec G115 -- splitting 64 bits in two

// MarshalText writes the LSN as PostgreSQL does, so manifests keep "X/Y".
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads "X/Y"; a manifest with anything else is refused.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
