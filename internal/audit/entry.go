package audit

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// parseEntry reads the fields Verify checks (entryFields) from a stored
// entry, as json.Unmarshal would. An entry in the canonical form of
// Record.Encode whose strings need no unescaping (every honest entry but
// those with quotes, backslashes or control characters in a value) is
// read by hand, its whole syntax checked, at a fraction of the cost;
// anything else (another key order, an escape, invalid UTF-8, trailing
// bytes, a number out of range, …) goes through encoding/json, which
// decides as it always did. So the hand-read path only ever accepts what
// json.Unmarshal accepts, with the same result (entry_test.go checks the
// two against each other). like is the row the entry came from: a string
// equal to its column is taken from it rather than allocated.
func parseEntry(entry []byte, like *Row, fe *entryFields) error {
	*fe = entryFields{}
	if fastEntry(entry, like, fe) {
		return nil
	}
	*fe = entryFields{}
	return json.Unmarshal(entry, fe)
}

// entryScanner reads a canonical entry.
type entryScanner struct {
	b []byte
	i int
}

func (s *entryScanner) lit(l string) bool {
	if len(s.b)-s.i < len(l) || string(s.b[s.i:s.i+len(l)]) != l {
		return false
	}
	s.i += len(l)
	return true
}

// str reads a JSON string that needs no unescaping: no backslash, no
// control character, valid UTF-8. raw is the string with its quotes.
func (s *entryScanner) str() (v, raw []byte, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, nil, false
	}
	start := s.i + 1
	j := bytes.IndexByte(s.b[start:], '"')
	if j < 0 {
		return nil, nil, false
	}
	v = s.b[start : start+j]
	ascii := true
	for _, c := range v {
		switch {
		case c < 0x20 || c == '\\':
			return nil, nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.Valid(v) {
		return nil, nil, false
	}
	raw = s.b[s.i : start+j+1]
	s.i = start + j + 1
	return v, raw, true
}

// field reads key (`,"name":`) and its string value when the entry has
// it there.
func (s *entryScanner) field(key string) (v []byte, present, ok bool) {
	if !s.lit(key) {
		return nil, false, true
	}
	v, _, ok = s.str()
	return v, true, ok
}

// same returns col when it equals v, else v as a new string.
func same(col string, v []byte) string {
	if string(v) == col {
		return col
	}
	return string(v)
}

// fastEntry reads a canonical entry into fe; false when the entry is not
// in the form it reads (fe is then to be discarded).
func fastEntry(b []byte, like *Row, fe *entryFields) bool {
	s := entryScanner{b: b}
	if !s.lit(`{"seq":`) {
		return false
	}
	start := s.i
	var seq uint64
	for s.i < len(b) && b[s.i] >= '0' && b[s.i] <= '9' {
		d := uint64(b[s.i] - '0')
		if seq > (^uint64(0)-d)/10 {
			return false // beyond uint64: json's error
		}
		seq = seq*10 + d
		s.i++
	}
	if n := s.i - start; n == 0 || (n > 1 && b[start] == '0') {
		return false
	}
	fe.Seq = seq
	if !s.lit(`,"ts":`) {
		return false
	}
	_, raw, ok := s.str()
	if !ok || fe.Time.UnmarshalJSON(raw) != nil {
		return false
	}
	if !s.lit(`,"actor":{"kind":`) {
		return false
	}
	v, _, ok := s.str()
	if !ok {
		return false
	}
	fe.Actor.Kind = same(like.ActorKind, v)
	if !s.lit(`,"id":`) {
		return false
	}
	if v, _, ok = s.str(); !ok {
		return false
	}
	fe.Actor.ID = same(like.ActorID, v)
	if !s.lit(`},"action":`) {
		return false
	}
	if v, _, ok = s.str(); !ok {
		return false
	}
	fe.Action = same(like.Action, v)
	v, present, ok := s.field(`,"target":`)
	if !ok {
		return false
	}
	if present {
		fe.Target = same(like.Target, v)
	}
	if !s.lit(`,"outcome":`) {
		return false
	}
	if v, _, ok = s.str(); !ok {
		return false
	}
	fe.Outcome = same(like.Outcome, v)
	for _, key := range [...]string{`,"reason":`, `,"ip":`, `,"transport":`, `,"request_id":`} {
		if _, _, ok := s.field(key); !ok {
			return false
		}
	}
	if s.lit(`,"details":{`) && !s.lit(`}`) {
		for {
			if _, _, ok := s.str(); !ok || !s.lit(`:`) {
				return false
			}
			if _, _, ok := s.str(); !ok {
				return false
			}
			if s.lit(`}`) {
				break
			}
			if !s.lit(`,`) {
				return false
			}
		}
	}
	return s.lit(`}`) && s.i == len(b)
}
