// Package calendar checks systemd calendar events (systemd.time(7)), the
// schedules of the timers `walvault systemd-units` writes, before they are
// written: with systemd-analyze where it is installed, which is the
// authority, else with a parser of the grammar systemd documents.
package calendar

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid marks an expression systemd would refuse.
var ErrInvalid = errors.New("not a systemd calendar event")

// Analyzer is the systemd-analyze to ask; "" skips it. A variable so
// tests can point it at a stand-in.
var Analyzer = "systemd-analyze"

// Check says whether expr is a calendar event systemd accepts: by
// `systemd-analyze calendar` when that is in PATH, else by Parse. via says
// which ("systemd-analyze" or "walvault's parser").
func Check(ctx context.Context, expr string) (via string, err error) {
	if Analyzer != "" {
		if path, lerr := exec.LookPath(Analyzer); lerr == nil {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			out, rerr := exec.CommandContext(ctx, path, "calendar", "--", expr).CombinedOutput() // #nosec G204 -- systemd's own checker, the expression as one argument
			var ee *exec.ExitError
			switch {
			case rerr == nil:
				return "systemd-analyze", nil
			case errors.As(rerr, &ee):
				return "systemd-analyze", fmt.Errorf("%w: %q: systemd-analyze calendar says: %s", ErrInvalid, expr, lastLine(string(out)))
			}
			// It could not run at all: fall back on the parser.
		}
	}
	return "walvault's parser", Parse(expr)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// shorthands are the special expressions systemd.time(7) lists.
var shorthands = map[string]bool{"minutely": true, "hourly": true, "daily": true, "monthly": true, "weekly": true,
	"yearly": true, "annually": true, "quarterly": true, "semiannually": true}

var weekdays = map[string]bool{}

func init() {
	for _, d := range []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"} {
		weekdays[d] = true
		weekdays[d[:3]] = true
	}
}

var tzRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`)

// Parse checks expr against systemd.time(7)'s calendar event grammar:
// a shorthand (daily, weekly, ...), or "[WEEKDAYS] [DATE] [TIME] [TIMEZONE]"
// with at least one of the first three, where weekdays are names, lists
// and ranges (Mon..Fri,Sun), the date is [YEAR-]MONTH-DAY and the time
// HOUR:MINUTE[:SECOND], each component *, a number, a list, a range
// (a..b), with a repetition (/n); a day may count from the month's end
// (~). It is stricter than nothing and looser than systemd on ranges of
// values: systemd-analyze, where installed, has the last word.
func Parse(expr string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %q: %s", ErrInvalid, expr, why) }
	fields := strings.Fields(expr)
	if len(fields) == 0 {
		return bad("empty")
	}
	if len(fields) == 1 && shorthands[strings.ToLower(fields[0])] {
		return nil
	}
	i := 0
	parts := 0
	if i < len(fields) && isWeekdays(fields[i]) {
		i++
		parts++
	}
	if i < len(fields) && strings.ContainsAny(fields[i], "-~") && !strings.Contains(fields[i], ":") {
		if err := checkDate(fields[i]); err != nil {
			return bad(err.Error())
		}
		i++
		parts++
	}
	if i < len(fields) && strings.Contains(fields[i], ":") {
		if err := checkTime(fields[i]); err != nil {
			return bad(err.Error())
		}
		i++
		parts++
	}
	if parts == 0 {
		return bad("expected a shorthand (daily, weekly, ...), weekdays (Mon..Fri), a date (*-*-01) or a time (02:30)")
	}
	if i < len(fields) && (fields[i] == "UTC" || tzRe.MatchString(fields[i]) && strings.Contains(fields[i], "/")) {
		i++
	}
	if i < len(fields) {
		return bad(fmt.Sprintf("%q is neither weekdays, a date, a time nor a time zone, or comes out of order (weekdays, date, time, zone)", fields[i]))
	}
	return nil
}

// isWeekdays: Mon, Mon..Fri, Sat,Sun, Mon..Wed,Fri.
func isWeekdays(f string) bool {
	for _, item := range strings.Split(f, ",") {
		lo, hi, isRange := strings.Cut(item, "..")
		if !weekdays[strings.ToLower(lo)] || isRange && !weekdays[strings.ToLower(hi)] {
			return false
		}
	}
	return true
}

// checkDate: [YEAR-]MONTH-DAY, or with ~ before the day, counted from
// the month's end.
func checkDate(f string) error {
	head, fromEnd, tilde := strings.Cut(f, "~")
	comps := strings.Split(head, "-")
	if tilde {
		comps = append(comps, fromEnd)
	}
	switch len(comps) {
	case 2:
		comps = append([]string{"*"}, comps...)
	case 3:
	default:
		return fmt.Errorf("date %q: expected YEAR-MONTH-DAY or MONTH-DAY", f)
	}
	limits := [][2]int{{1970, 2199}, {1, 12}, {1, 31}}
	names := []string{"year", "month", "day"}
	for k, c := range comps {
		if err := checkComponent(c, limits[k][0], limits[k][1]); err != nil {
			return fmt.Errorf("date %q: %s %v", f, names[k], err)
		}
	}
	return nil
}

// checkTime: HOUR:MINUTE[:SECOND[.FRACTION]].
func checkTime(f string) error {
	comps := strings.Split(f, ":")
	if len(comps) != 2 && len(comps) != 3 {
		return fmt.Errorf("time %q: expected HOUR:MINUTE or HOUR:MINUTE:SECOND", f)
	}
	limits := [][2]int{{0, 23}, {0, 59}, {0, 59}}
	names := []string{"hour", "minute", "second"}
	for k, c := range comps {
		if k == 2 {
			if whole, frac, ok := strings.Cut(c, "."); ok {
				if !allDigits(frac) || frac == "" {
					return fmt.Errorf("time %q: second %q", f, c)
				}
				c = whole
			}
		}
		if err := checkComponent(c, limits[k][0], limits[k][1]); err != nil {
			return fmt.Errorf("time %q: %s %v", f, names[k], err)
		}
	}
	return nil
}

// checkComponent: *, n, a..b, lists of those, each with an optional /step.
func checkComponent(c string, lo, hi int) error {
	if c == "" {
		return errors.New("is empty")
	}
	for _, item := range strings.Split(c, ",") {
		val, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			if n, err := strconv.Atoi(step); err != nil || n <= 0 {
				return fmt.Errorf("%q: the repetition /%s is not a positive number", item, step)
			}
		}
		if val == "*" {
			continue
		}
		a, b, isRange := strings.Cut(val, "..")
		for _, v := range []string{a, b} {
			if !isRange && v == b {
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || !allDigits(v) {
				return fmt.Errorf("%q is not a number, a range (a..b) or *", val)
			}
			if n < lo || n > hi {
				return fmt.Errorf("%d is out of range (%d to %d)", n, lo, hi)
			}
		}
	}
	return nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
