package archive

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// HistoryEntry is one line of a timeline history file: timeline TLI ended
// at End, where the next one branched off.
type HistoryEntry struct {
	TLI uint32
	End LSN
}

// ParseHistory reads a PostgreSQL timeline history file.
func ParseHistory(text string) ([]HistoryEntry, error) {
	var out []HistoryEntry
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("history line %q", line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || tli == 0 {
			return nil, fmt.Errorf("history line %q: bad timeline", line)
		}
		end, err := ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("history line %q: %w", line, err)
		}
		out = append(out, HistoryEntry{TLI: uint32(tli), End: end})
	}
	return out, sc.Err()
}
