package chat

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
)

// Limits on search queries.
const (
	MaxQueryBytes = 256
	MaxQueryTerms = 16
)

// SanitizeQuery turns a user's search text into a safe FTS5 expression: the
// text is split on white space into at most MaxQueryTerms terms, each term is
// quoted as an FTS5 string (so operators, column filters, NEAR(, parentheses
// and quotes are plain text), a trailing '*' makes a term a prefix query, and
// the terms are ANDed. Terms without any letter or digit are dropped. The
// result never makes FTS5 report a syntax error; a query with no usable term
// is invalid.
func SanitizeQuery(q string) (string, error) {
	if len(q) > MaxQueryBytes {
		return "", unhidra.Errorf(unhidra.EINVALID, "search query is longer than %d bytes", MaxQueryBytes)
	}
	if !utf8.ValidString(q) {
		return "", unhidra.Errorf(unhidra.EINVALID, "search query is not valid UTF-8")
	}
	q = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, q)
	var b strings.Builder
	n := 0
	for _, f := range strings.Fields(q) {
		prefix := strings.HasSuffix(f, "*")
		term := strings.TrimRight(f, "*")
		if !strings.ContainsFunc(term, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
			continue
		}
		if n == MaxQueryTerms {
			break
		}
		if n > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(term, `"`, `""`))
		b.WriteByte('"')
		if prefix {
			b.WriteByte('*')
		}
		n++
	}
	if n == 0 {
		return "", unhidra.Errorf(unhidra.EINVALID, "search query has no words")
	}
	return b.String(), nil
}

// ParsePage parses the before, after and limit parameters of a history
// request. Offsets are non-negative integers (after=0 reads from the first
// message on, oldest first); limit is 1..MaxPageLimit
// (DefaultPageLimit when empty); before must be above after when both are
// set.
func ParsePage(before, after, limit string) (Page, error) {
	var p Page
	var err error
	if p.Before, err = parseOffsetParam("before", before); err != nil {
		return Page{}, err
	}
	if p.After, err = parseOffsetParam("after", after); err != nil {
		return Page{}, err
	}
	p.Forward = after != ""
	if p.Before > 0 && p.After > 0 && p.Before <= p.After+1 {
		return Page{}, unhidra.Errorf(unhidra.EINVALID, "before must be greater than after + 1")
	}
	if p.Limit, err = ParseLimit(limit, DefaultPageLimit, MaxPageLimit); err != nil {
		return Page{}, err
	}
	return p, nil
}

// ParseLimit parses a limit parameter: empty means def, otherwise an
// integer in 1..max.
func ParseLimit(s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, unhidra.Errorf(unhidra.EINVALID, "limit must be an integer from 1 to %d", max)
	}
	return n, nil
}

// ParseOffset parses a non-negative message offset ("" is 0).
func ParseOffset(name, s string) (int64, error) { return parseOffsetParam(name, s) }

func parseOffsetParam(name, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if len(s) > 19 {
		return 0, unhidra.Errorf(unhidra.EINVALID, "%s must be a non-negative integer offset", name)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || s[0] == '+' {
		return 0, unhidra.Errorf(unhidra.EINVALID, "%s must be a non-negative integer offset", name)
	}
	return n, nil
}
