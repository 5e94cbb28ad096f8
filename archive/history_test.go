package archive

import "testing"

func TestParseHistory(t *testing.T) {
	h, err := ParseHistory("1\t0/5000000\tno recovery target specified\n\n2\t0/7A000D8\tbefore 2026-11-29 21:15:00+00\n")
	if err != nil || len(h) != 2 || h[0].TLI != 1 || h[0].End != 0x5000000 || h[1].TLI != 2 || h[1].End != 0x7A000D8 {
		t.Fatalf("got %+v, %v", h, err)
	}
	for _, bad := range []string{"x\t0/1\n", "1\n", "1\tzz\n", "0\t0/1\n"} {
		if _, err := ParseHistory(bad); err == nil {
			t.Errorf("ParseHistory(%q) accepted", bad)
		}
	}
}
