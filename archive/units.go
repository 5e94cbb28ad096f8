package archive

import (
	"fmt"
	"strings"
	"time"
)

// HumanBytes formats a byte count with binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// FormatTime prints a moment in UTC with microseconds, as messages and
// recovery targets show it.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999Z07:00") }

// OrNone prints "none" for an empty string.
func OrNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// OneLine folds a multi-line message (a driver's, a parser's) into one
// line, as every error walvault prints must be.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
