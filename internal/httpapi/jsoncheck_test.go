package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// nested is a JSON value of n nested objects: {"a":{"a":…1…}}.
func nested(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }

func TestCheckJSONText(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"a flat object is accepted", `{"a":1,"b":[1,2]}`, true},
		{"a field nested 32 deep is accepted", `{"data":` + nested(MaxJSONDepth) + `}`, true},
		{"a field nested 33 deep is refused", `{"data":` + nested(MaxJSONDepth+1) + `}`, false},
		{"arrays count like objects", `[` + strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1) + `]`, false},
		{"brackets inside strings do not count", `{"a":"` + strings.Repeat("[{", 100) + `"}`, true},
		{"an escaped quote does not end the string", `{"a":"\"[[[[` + strings.Repeat("[", 100) + `"}`, true},
		{"an invalid UTF-8 byte in a string is refused", "{\"a\":\"caf\xe9\"}", false},
		{"an overlong encoding is refused", "{\"a\":\"\xc0\xaf\"}", false},
		{"an encoded surrogate is refused", "{\"a\":\"\xed\xa0\x80\"}", false},
		{"a lone high surrogate escape is refused", `{"a":"\ud83d"}`, false},
		{"a lone low surrogate escape is refused", `{"a":"\ude00x"}`, false},
		{"a high surrogate followed by a non-surrogate is refused", `{"a":"\ud83d\u0041"}`, false},
		{"a surrogate pair is accepted", `{"a":"\ud83d\ude00"}`, true},
		{"real non-ASCII text is accepted", `{"a":"café 😀 日本"}`, true},
		{"an escaped backslash before u is not an escape", `{"a":"\\ud83d"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkJSONText([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("checkJSONText(%.60q) = %v, want ok=%v", tc.body, err, tc.ok)
			}
		})
	}
}

// refDepth is the nesting depth of a valid JSON text, by the standard
// decoder's tokens.
func refDepth(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, most := 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) || err != nil {
			return most
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
				most = max(most, depth)
			} else {
				depth--
			}
		}
	}
}

// strings walks a decoded value's strings (keys included).
func walkStrings(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case []any:
		for _, e := range x {
			walkStrings(e, f)
		}
	case map[string]any:
		for k, e := range x {
			f(k)
			walkStrings(e, f)
		}
	}
}

func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{`{"a":1}`, nested(40), `{"a":"\ud83d\ude00"}`, `{"a":"\ud83d"}`, "{\"a\":\"\xff\"}", `["\\u0041"]`, `{"a":"\"[["}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkJSONText(b)
		if err == nil && !utf8.Valid(b) {
			t.Fatalf("accepted invalid UTF-8: %q", b)
		}
		if !json.Valid(b) {
			return
		}
		// On valid JSON the depth verdict is exactly the decoder's.
		if deep := refDepth(b) > MaxJSONDepth+1; deep && err == nil {
			t.Fatalf("accepted depth %d: %.80q", refDepth(b), b)
		} else if !deep && utf8.Valid(b) && err != nil && !strings.Contains(err.Error(), "Unicode") {
			t.Fatalf("refused depth %d: %v", refDepth(b), err)
		}
		if err != nil {
			return
		}
		// What is accepted decodes without a replacement character the
		// client did not send.
		sent := bytes.ContainsRune(b, utf8.RuneError) || bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
		var v any
		if json.Unmarshal(b, &v) != nil {
			t.Fatalf("json.Valid but Unmarshal failed: %q", b)
		}
		walkStrings(v, func(s string) {
			if strings.ContainsRune(s, utf8.RuneError) && !sent {
				t.Fatalf("accepted %q, which decodes with U+FFFD", b)
			}
		})
	})
}
