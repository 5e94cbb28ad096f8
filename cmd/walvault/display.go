package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Text read from the bucket (backup names, folder and object names,
// tablespace names and locations, annotations, problems that quote an
// object) is data: it reaches a terminal only through shown, and JSON
// only through encodeJSON, so no escape sequence of a bucket writer's
// reaches the operator's terminal.

// shown returns s as is when it is plain printable text, else quoted in
// Go syntax with every non-printable rune escaped
// (strconv.QuoteToGraphic).
func shown(s string) string {
	if s != "" && plain(s) {
		return s
	}
	return strconv.QuoteToGraphic(s)
}

// plain: valid UTF-8 of graphic runes (letters, marks, numbers,
// punctuation, symbols, spaces), not starting with a quote that would
// read as shown's own quoting.
func plain(s string) bool {
	if !utf8.ValidString(s) || s[0] == '"' {
		return false
	}
	for _, r := range s {
		if !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}

// shownAll is shown over a list.
func shownAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = shown(s)
	}
	return out
}

// encodeJSON writes v as indented JSON. encoding/json escapes the C0
// controls, U+2028 and U+2029; the other runes that are not graphic (DEL,
// the C1 controls such as U+009B, which some terminals take for CSI, bidi
// and other format characters) are escaped here as well, which JSON allows
// inside strings (outside strings it emits only ASCII structure).
func encodeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(escapeNonGraphic(buf.Bytes()))
	return err
}

// escapeNonGraphic rewrites the runes of encoded JSON that are neither
// graphic nor the whitespace of its layout as \u escapes.
func escapeNonGraphic(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r < utf8.RuneSelf && r != 0x7f, unicode.IsGraphic(r):
			out = append(out, b[:n]...)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default: // DEL, C1 controls, format characters; encoding/json never writes invalid UTF-8
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		b = b[n:]
	}
	return out
}

// graphicOnly escapes, in Go syntax, every rune of s that is not graphic:
// the one line walvault prints on failure may quote bucket text in an
// error, and no escape sequence may reach the terminal through it.
func graphicOnly(s string) string {
	if plain(s) || s == "" {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r != utf8.RuneError && unicode.IsGraphic(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRuneToGraphic(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

// shellQuote quotes a path for a command line printed for the user.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
