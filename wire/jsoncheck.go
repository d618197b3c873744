package wire

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of a JSON value a client sends: message `data`,
// an `e2ee` envelope, telemetry data, a command result, and every field of a
// request body, WebSocket frame or MQTT payload. A scalar has depth 0, `[]`
// and `{}` depth 1, `[[1]]` depth 2. It is the same on every transport.
const MaxDepth = 32

// JSONError is why CheckJSON or CheckJSONBody refused a document. Its message
// is safe to send back to the client.
type JSONError struct {
	// Reason is one of the JSONReason values.
	Reason string
	// Offset is the byte offset at which the problem was found.
	Offset int
}

// Reasons of a JSONError.
const (
	// JSONTooDeep: objects and arrays nest deeper than MaxDepth.
	JSONTooDeep = "too_deep"
	// JSONBadUnicode: the text is not valid UTF-8, or a string has a \u
	// escape of a lone UTF-16 surrogate.
	JSONBadUnicode = "bad_unicode"
	// JSONSyntax: the document is not JSON.
	JSONSyntax = "syntax"
)

func (e *JSONError) Error() string {
	switch e.Reason {
	case JSONTooDeep:
		return fmt.Sprintf("JSON is nested deeper than %d levels", MaxDepth)
	case JSONBadUnicode:
		return "JSON text is not valid UTF-8 or has a lone surrogate escape"
	default:
		return "not valid JSON"
	}
}

// Code is the error code transports send for a JSONError: always "invalid".
func (e *JSONError) Code() string { return CodeInvalid }

// CheckJSON checks that b is one valid JSON value, nested at most MaxDepth
// levels, whose text is valid UTF-8 with no \u escape of a lone surrogate.
// encoding/json silently replaces invalid UTF-8 and lone surrogates with
// U+FFFD, so a value that passes here decodes to exactly what was sent.
// Use it on a value such as message `data`; the error is a *JSONError.
func CheckJSON(b []byte) error { return checkJSON(b, MaxDepth) }

// CheckJSONBody is CheckJSON for an envelope whose fields are values: a
// request body, a WebSocket frame, an MQTT payload object. Each value inside
// its top-level object or array may nest MaxDepth levels, so the document as a
// whole may nest MaxDepth+1.
func CheckJSONBody(b []byte) error { return checkJSON(b, MaxDepth+1) }

func checkJSON(b []byte, max int) error {
	if !utf8.Valid(b) {
		return &JSONError{Reason: JSONBadUnicode, Offset: firstInvalidUTF8(b)}
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
			if depth > max {
				return &JSONError{Reason: JSONTooDeep, Offset: i}
			}
		case '}', ']':
			depth--
		case '"':
			end, ok := scanJSONString(b, i+1)
			if !ok {
				return &JSONError{Reason: JSONBadUnicode, Offset: end}
			}
			i = end
		}
	}
	// The structural scan above ignores syntax; refuse anything else that is
	// not JSON here, after the cheap checks bounded the decoder's work.
	if !json.Valid(b) {
		return &JSONError{Reason: JSONSyntax}
	}
	return nil
}

// scanJSONString walks the JSON string whose content starts at b[i] and
// returns the index of its closing quote (len(b) when unterminated). ok is
// false at a \u escape of a lone surrogate; end is then its offset.
func scanJSONString(b []byte, i int) (end int, ok bool) {
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i, true
		case '\\':
			if i+1 < len(b) && b[i+1] == 'u' {
				r, n := hex4(b, i+2)
				if n == 0 {
					i++ // malformed escape: json.Valid refuses it
					continue
				}
				switch {
				case r >= 0xD800 && r < 0xDC00: // high surrogate: a low one must follow
					if i+11 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
						if lo, m := hex4(b, i+8); m != 0 && lo >= 0xDC00 && lo < 0xE000 {
							i += 11
							continue
						}
					}
					return i, false
				case r >= 0xDC00 && r < 0xE000: // low surrogate alone
					return i, false
				}
				i += 5
				continue
			}
			i++ // skip the escaped byte
		}
	}
	return len(b), true
}

// hex4 decodes the four hex digits at b[i:i+4]; n is 0 when they are not.
func hex4(b []byte, i int) (r rune, n int) {
	if i+4 > len(b) {
		return 0, 0
	}
	for _, c := range b[i : i+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, 0
		}
		r = r<<4 | rune(d)
	}
	return r, 4
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}
