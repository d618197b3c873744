package httpapi

import (
	"unicode/utf8"

	"github.com/unhidra/unhidra"
)

// MaxJSONDepth bounds the nesting of every value of a JSON request body
// (message `data` included): a field of the body's top-level object or
// array may nest at most MaxJSONDepth levels of objects and arrays, the
// depth the WebSocket and MQTT decoders allow. Deeper documents are stored
// but break history reads in common clients.
const MaxJSONDepth = 32

// checkJSONText refuses, before decoding, a request body that is nested
// deeper than MaxJSONDepth below its top level or that is not valid UTF-8,
// including a \u escape of a lone UTF-16 surrogate. encoding/json would
// silently replace both kinds of invalid text with U+FFFD, storing
// something other than what was sent. A body that is not JSON at all is left
// to the decoder to refuse.
func checkJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return unhidra.Errorf(unhidra.EINVALID, "request body is not valid UTF-8")
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{', '[':
			depth++
			if depth > MaxJSONDepth+1 {
				return unhidra.Errorf(unhidra.EINVALID, "request body is nested deeper than %d levels", MaxJSONDepth)
			}
		case '}', ']':
			depth--
		case '"':
			end, ok := scanString(b, i+1)
			if !ok {
				return unhidra.Errorf(unhidra.EINVALID, "request body has a string that is not valid Unicode")
			}
			i = end
		}
	}
	return nil
}

// scanString walks the JSON string whose content starts at b[i] and returns
// the index of its closing quote (len(b) when unterminated: the decoder
// refuses it). ok is false for a \u escape of a lone surrogate.
func scanString(b []byte, i int) (end int, ok bool) {
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i, true
		case '\\':
			if i+1 < len(b) && b[i+1] == 'u' {
				r, n := hex4(b, i+2)
				if n == 0 {
					i++ // malformed escape: the decoder refuses it
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
