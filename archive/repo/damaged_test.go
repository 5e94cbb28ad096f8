package repo

import (
	"errors"
	"fmt"
	"testing"

	"github.com/walvault/walvault/archive"
	"github.com/walvault/walvault/crypto"
)

func TestDamagedKind(t *testing.T) {
	proof := fmt.Errorf("manifest.json: %w", crypto.ErrBadProof)
	broken := fmt.Errorf("%w: cannot be parsed", archive.ErrIntegrity)
	for _, tt := range []struct {
		name string
		bad  []Damaged
		want error
	}{
		{"none", nil, nil},
		{"damaged", []Damaged{{Err: broken}}, archive.ErrIntegrity},
		{"one fails authentication", []Damaged{{Err: broken}, {Err: proof}}, crypto.ErrBadProof},
	} {
		if got := DamagedKind(tt.bad); !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if DamageMark(proof) != "UNAUTHENTICATED" || DamageMark(broken) != "DAMAGED" {
		t.Errorf("marks %s, %s", DamageMark(proof), DamageMark(broken))
	}
	folders := []*DumpFolder{{Folder: Folder{Name: "a"}}, {Folder: Folder{Name: "b", Size: 7}, Err: proof}}
	if d := DamagedDumps(folders); len(d) != 1 || d[0].Name != "b" || d[0].Mark != "UNAUTHENTICATED" || d[0].Size != 7 {
		t.Errorf("damaged dumps %+v", d)
	}
}
