package retention

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/walvault/walvault/archive"
)

// ParseWindow reads a --retain-window: Go durations (36h, 90m) plus days
// and weeks (7d, 2w, 1d12h).
func ParseWindow(s string) (time.Duration, error) {
	bad := fmt.Errorf("%w: %q is not a duration: use e.g. 7d, 2w, 36h or 1d12h", archive.ErrBadInput, s)
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, bad
	}
	var total time.Duration
	for t != "" {
		i := 0
		for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
			i++
		}
		j := i
		for j < len(t) && !(t[j] >= '0' && t[j] <= '9' || t[j] == '.') {
			j++
		}
		if i == 0 || j == i {
			return 0, bad
		}
		d, ok := windowTerm(t[:i], t[i:j])
		if !ok {
			return 0, bad
		}
		total += d
		t = t[j:]
	}
	if total <= 0 {
		return 0, bad
	}
	return total, nil
}

// windowTerm reads one number and unit of a window: d and w, or any unit
// time.ParseDuration knows.
func windowTerm(num, unit string) (time.Duration, bool) {
	switch unit {
	case "d", "w":
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, false
		}
		day := 24 * time.Hour
		if unit == "w" {
			day *= 7
		}
		return time.Duration(v * float64(day)), true
	}
	d, err := time.ParseDuration(num + unit)
	return d, err == nil
}

// FormatWindow prints a duration the way --retain-window reads it.
func FormatWindow(d time.Duration) string {
	day := 24 * time.Hour
	if d < day {
		return trimZeroUnits(d.String())
	}
	if d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return fmt.Sprintf("%dd%s", d/day, trimZeroUnits((d % day).String()))
}

// trimZeroUnits turns 12h0m0s into 12h and 30m0s into 30m.
func trimZeroUnits(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
