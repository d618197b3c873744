package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// Record is one entry of the audit log: an Event with its place (Seq, the
// leaf index in the Merkle tree, from 0) and every field bounded.
//
// Its canonical encoding (Encode) is the leaf: the bytes that are stored,
// hashed into the tree and exported, so a record read back, exported to a
// SIEM or checked offline is byte for byte the one that was signed.
type Record struct {
	Seq       uint64            `json:"seq"`
	Time      time.Time         `json:"ts"`
	Actor     Actor             `json:"actor"`
	Action    string            `json:"action"`
	Target    string            `json:"target,omitempty"`
	Outcome   string            `json:"outcome"`
	Reason    string            `json:"reason,omitempty"`
	IP        string            `json:"ip,omitempty"`
	Transport string            `json:"transport,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	Details   map[string]string `json:"details,omitempty"`
}

// Actor is who acted: a principal's kind and id (kind "anonymous" with an
// empty id when no one could be named).
type Actor struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// Bounds of a record's fields, in bytes. A longer value is cut at a rune
// boundary and marked with how much was cut; more details than MaxDetails
// are dropped and counted in the detail "truncated".
const (
	MaxActorID   = 256
	MaxAction    = 64
	MaxTarget    = 256
	MaxReason    = 1024
	MaxIP        = 64
	MaxTransport = 16
	MaxRequestID = 64
	MaxDetails   = 32
	MaxDetailKey = 64
	MaxDetailVal = 1024
	// MaxEntry bounds the encoded record; the bounds above keep every record
	// well below it.
	MaxEntry = 64 << 10
)

// NewRecord makes the bounded record of e (e completed by Complete). Text a
// client chose is kept as it came, cut to its bound, with invalid UTF-8
// replaced and credential-shaped substrings (a token, a device key that
// slipped into a reason) replaced by their redact.Hash. Control
// characters stay as they are: the JSON encoding escapes them, so a record
// cannot forge a line break in any export.
func NewRecord(e Event) Record {
	r := Record{
		Time:      e.Time.UTC(),
		Actor:     Actor{Kind: clip(e.Actor.Kind, MaxTransport), ID: clip(redact.Scrub(e.Actor.ID), MaxActorID)},
		Action:    clip(e.Action, MaxAction),
		Target:    clip(redact.Scrub(e.Target), MaxTarget),
		Outcome:   clip(e.Outcome, MaxAction),
		Reason:    clip(redact.Scrub(e.Reason), MaxReason),
		IP:        clip(e.IP, MaxIP),
		Transport: clip(e.Transport, MaxTransport),
		RequestID: clip(e.RequestID, MaxRequestID),
	}
	if r.Actor.Kind == "" {
		r.Actor.Kind = "anonymous"
	}
	if len(e.Details) > 0 {
		keys := slices.Sorted(maps.Keys(e.Details))
		keep := keys
		if len(keys) > MaxDetails {
			keep = keys[:MaxDetails-1]
		}
		r.Details = make(map[string]string, len(keep)+1)
		for _, k := range keep {
			r.Details[clip(k, MaxDetailKey)] = clip(redact.Scrub(e.Details[k]), MaxDetailVal)
		}
		if n := len(keys) - len(keep); n > 0 {
			r.Details["truncated"] = strconv.Itoa(n) + " more details dropped"
		}
	}
	return r
}

// clip cuts s to at most n bytes at a rune boundary, marking the cut, and
// replaces invalid UTF-8.
func clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	mark := fmt.Sprintf("…[+%d bytes]", len(s)-n)
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Principal returns the actor as a wire.Principal.
func (a Actor) Principal() wire.Principal {
	return wire.Principal{Kind: a.Kind, ID: a.ID}
}

// Encode returns the canonical encoding of r: JSON with the fields in their
// declared order, details sorted by name, the time in RFC 3339 with
// nanoseconds in UTC, no HTML escaping and no trailing newline.
func (r Record) Encode() ([]byte, error) {
	r.Time = r.Time.UTC()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if len(out) > MaxEntry {
		return nil, fmt.Errorf("audit record of %d bytes is larger than %d", len(out), MaxEntry)
	}
	return out, nil
}

// DecodeRecord parses a stored entry and checks that it is canonical: the
// encoding of what it decodes to is the entry itself, so two different
// byte strings can never stand for one record.
func DecodeRecord(entry []byte) (Record, error) {
	var r Record
	if len(entry) > MaxEntry {
		return r, fmt.Errorf("entry of %d bytes is larger than %d", len(entry), MaxEntry)
	}
	dec := json.NewDecoder(bytes.NewReader(entry))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("entry is not a record: %w", err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("entry has data after the record")
	}
	again, err := r.Encode()
	if err != nil {
		return Record{}, err
	}
	if !bytes.Equal(again, entry) {
		return Record{}, fmt.Errorf("entry is not in canonical form")
	}
	return r, nil
}
