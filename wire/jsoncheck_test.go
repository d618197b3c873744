package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

// nested returns a JSON array nested depth levels deep ("1" at depth 0).
func nested(depth int) string {
	return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
}

func nestedObject(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

func jsonReason(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var je *JSONError
	if !errors.As(err, &je) {
		t.Fatalf("err = %v (%T), want a *JSONError", err, err)
	}
	if je.Code() != CodeInvalid {
		t.Errorf("code = %q, want invalid", je.Code())
	}
	return je.Reason
}

func TestCheckJSONAcceptsDepth32AndRefuses33(t *testing.T) {
	for _, mk := range []func(int) string{nested, nestedObject} {
		if err := CheckJSON([]byte(mk(MaxDepth))); err != nil {
			t.Errorf("depth %d refused: %v", MaxDepth, err)
		}
		if r := jsonReason(t, CheckJSON([]byte(mk(MaxDepth+1)))); r != JSONTooDeep {
			t.Errorf("depth %d: reason %q, want %q", MaxDepth+1, r, JSONTooDeep)
		}
		if r := jsonReason(t, CheckJSON([]byte(mk(10000)))); r != JSONTooDeep {
			t.Errorf("depth 10000: reason %q, want %q", r, JSONTooDeep)
		}
		// A body's fields may nest MaxDepth levels below the body itself.
		body := `{"data":` + mk(MaxDepth) + `}`
		if err := CheckJSONBody([]byte(body)); err != nil {
			t.Errorf("body with data at depth %d refused: %v", MaxDepth, err)
		}
		body = `{"data":` + mk(MaxDepth+1) + `}`
		if r := jsonReason(t, CheckJSONBody([]byte(body))); r != JSONTooDeep {
			t.Errorf("body with data at depth %d: reason %q, want %q", MaxDepth+1, r, JSONTooDeep)
		}
	}
}

func TestCheckJSONBracketsInsideStringsAreNotNesting(t *testing.T) {
	s := `{"a":"` + strings.Repeat("[{", 100) + `\"` + strings.Repeat("[", 50) + `"}`
	if err := CheckJSON([]byte(s)); err != nil {
		t.Fatalf("brackets inside a string counted as nesting: %v", err)
	}
}

func TestCheckJSONRefusesInvalidUnicode(t *testing.T) {
	tests := []struct {
		name, in, reason string
	}{
		{"invalid UTF-8 byte in a string", "{\"t\":\"a\xffb\"}", JSONBadUnicode},
		{"truncated UTF-8 sequence", "\"\xe2\x82\"", JSONBadUnicode},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\"", JSONBadUnicode},
		{"invalid UTF-8 in a key", "{\"k\xc3\":1}", JSONBadUnicode},
		{"lone high surrogate escape", `"\ud800"`, JSONBadUnicode},
		{"lone high surrogate then text", `"\uD83Dxxxxxx"`, JSONBadUnicode},
		{"lone low surrogate escape", `"\udc00"`, JSONBadUnicode},
		{"two high surrogates", `"\ud83d\ud83d"`, JSONBadUnicode},
		{"surrogate at the end of input", `"\ud83d`, JSONBadUnicode},
		{"not JSON", `{"a":`, JSONSyntax},
		{"two values", `1 2`, JSONSyntax},
		{"empty", ``, JSONSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := jsonReason(t, CheckJSON([]byte(tt.in))); r != tt.reason {
				t.Errorf("reason %q, want %q", r, tt.reason)
			}
		})
	}
	for _, ok := range []string{`"\ud83d\ude00"`, `"é😀"`, `"\u00e9\\ud800"`, `"\ufffd"`, `{"a":[1,{"b":null}]}`, `  7 `} {
		if err := CheckJSON([]byte(ok)); err != nil {
			t.Errorf("CheckJSON(%s) = %v, want nil", ok, err)
		}
	}
}

func TestDecodeClientFrameBoundsDepthOfEveryField(t *testing.T) {
	ok := []string{
		`{"type":"publish","channel":"c","data":` + nested(MaxDepth) + `}`,
		`{"type":"publish","channel":"c","e2ee":` + nestedObject(MaxDepth) + `}`,
		`{"type":"telemetry","data":` + nestedObject(MaxDepth) + `}`,
		`{"type":"command_result","command_id":"c","status":"ok","result":` + nested(MaxDepth) + `}`,
	}
	for _, in := range ok {
		if _, err := DecodeClientFrame([]byte(in)); err != nil {
			t.Errorf("depth %d refused: %v", MaxDepth, err)
		}
	}
	deep := []string{
		`{"type":"publish","channel":"c","id":"p1","data":` + nested(MaxDepth+1) + `}`,
		`{"type":"publish","channel":"c","id":"p1","e2ee":` + nestedObject(MaxDepth+1) + `}`,
		`{"type":"telemetry","id":"p1","data":` + nestedObject(MaxDepth+1) + `}`,
		`{"type":"command_result","id":"p1","command_id":"c","status":"ok","result":` + nested(MaxDepth+1) + `}`,
		`{"type":"typing","id":"p1","channel":"c","extra":` + nested(MaxDepth+1) + `}`,
		`{"type":"publish","channel":"c","id":"p1","data":` + nested(5000) + `}`,
	}
	for _, in := range deep {
		f, err := DecodeClientFrame([]byte(in))
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Code != CodeInvalid {
			t.Errorf("depth %d accepted or wrong error: %v", MaxDepth+1, err)
			continue
		}
		if string(f.ID) != `"p1"` {
			t.Errorf("id = %s, want \"p1\" for the error reply", f.ID)
		}
	}
}

func TestDecodeClientFrameRefusesInvalidUnicodeInsteadOfReplacingIt(t *testing.T) {
	for _, in := range []string{
		"{\"type\":\"publish\",\"channel\":\"c\",\"text\":\"a\xffb\"}",
		"{\"type\":\"publish\",\"channel\":\"c\",\"data\":{\"k\":\"\xc3\"}}",
		`{"type":"publish","channel":"c","text":"\ud800"}`,
		`{"type":"publish","channel":"c","data":"\udfff"}`,
		"{\"type\":\"telemetry\",\"data\":{\"t\xfe\":1}}",
	} {
		if _, err := DecodeClientFrame([]byte(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
	// An id with a lone surrogate is not echoed back.
	f, err := DecodeClientFrame([]byte(`{"type":"typing","channel":"c","id":"\ud800"}`))
	if err == nil || f.ID != nil {
		t.Errorf("id with a lone surrogate: err %v, id %s", err, f.ID)
	}
	f, err = DecodeClientFrame([]byte(`{"type":"publish","channel":"c","text":"\ud83d\ude00"}`))
	if err != nil || *f.Publish.Text != "😀" {
		t.Errorf("surrogate pair: %v %+v", err, f.Publish)
	}
}

// refJSON is an independent reference for CheckJSON built on encoding/json's
// tokenizer: the document's depth, and whether any string (keys included)
// decoded to U+FFFD, which encoding/json substitutes for invalid text.
func refJSON(b []byte) (valid bool, depth int, replaced bool) {
	if !json.Valid(b) {
		return false, 0, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	d := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return true, depth, replaced
		}
		if err != nil {
			return false, 0, false
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '[' || v == '{' {
				d++
				depth = max(depth, d)
			} else {
				d--
			}
		case string:
			if strings.ContainsRune(v, '\uFFFD') {
				replaced = true
			}
		}
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,2,{"b":"c"}]}`, nested(MaxDepth), nested(MaxDepth + 1), nestedObject(MaxDepth + 1),
		`"\ud83d\ude00"`, `"\ud800"`, `"\udc00x"`, "\"\xff\"", `"\ufffd"`, "\"\uFFFD\"", `"[{"`,
		`{"k":"\u005b"}`, `"\\ud800"`, `[1,2`, ``, `null`, `"\u0000"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckJSON(b)
		errBody := CheckJSONBody(b)
		valid, depth, replaced := refJSON(b)
		hasFFFD := bytes.Contains(b, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
		if err != nil {
			var je *JSONError
			if !errors.As(err, &je) {
				t.Fatalf("error %v is not a *JSONError", err)
			}
			// A refused document is invalid, too deep, or lost text in decoding.
			if valid && depth <= MaxDepth && !replaced {
				t.Fatalf("refused %q (%v) that decodes exactly at depth %d", b, err, depth)
			}
		} else {
			if !valid {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			if depth > MaxDepth {
				t.Fatalf("accepted depth %d", depth)
			}
			if replaced && !hasFFFD {
				t.Fatalf("accepted %q whose strings decode with U+FFFD substitutions", b)
			}
			if errBody != nil {
				t.Fatalf("CheckJSON accepted what CheckJSONBody refused: %v", errBody)
			}
		}
		if errBody == nil && (!valid || depth > MaxDepth+1) {
			t.Fatalf("CheckJSONBody accepted %q at depth %d", b, depth)
		}
	})
}

func TestDecodeClientFrameKeepsIDOfAFrameNestedPastTheDecodersLimit(t *testing.T) {
	f, err := DecodeClientFrame([]byte(`{"type":"publish","id":"x9","channel":"c","data":` + nested(10000) + `}`))
	if err == nil || string(f.ID) != `"x9"` {
		t.Fatalf("err %v, id %s; want refused with id \"x9\"", err, f.ID)
	}
}

// topLevelMember agrees with encoding/json on every object both can read.
func FuzzTopLevelMember(f *testing.F) {
	for _, s := range []string{`{"id":1}`, `{"a":[{"id":2}],"id":"x"}`, `{"ID":1,"id":2}`, `{"id":"\"}"}`, ` { "id" : 7 } `, `{"a":"\\"}`, `{"Id":null}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := topLevelMember(b, "id")
		var ref struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(b, &ref) != nil {
			return
		}
		if !bytes.Equal(got, ref.ID) {
			t.Fatalf("topLevelMember(%q) = %q, encoding/json says %q", b, got, ref.ID)
		}
	})
}
