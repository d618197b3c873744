package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/wire"
)

// entrySamples are canonical entries of records with plain and awkward
// values.
func entrySamples(t testing.TB) [][]byte {
	t.Helper()
	evs := []Event{
		{Action: ActionLogin, Actor: wire.Principal{Kind: wire.KindUser, ID: "alice"}, Target: "alice", IP: "203.0.113.7", Transport: TransportHTTP, RequestID: "req-1"},
		{Action: ActionLogin, Outcome: Failure, Reason: "bad password", Actor: wire.Principal{Kind: wire.KindUser, ID: "bob"}},
		{Action: ActionDeviceRegister, Actor: wire.Principal{Kind: wire.KindUser, ID: "ünïcødé-名前"}, Target: "dev-1", Details: map[string]string{"name": "thermo", "owner": "alice"}},
		{Action: ActionMemberAdd, Actor: wire.Principal{Kind: wire.KindUser, ID: `quote"and\backslash`}, Target: "line\nbreak\r\x1b[31m"},
		{Action: ActionConnectionRefused, Reason: "auth", Details: map[string]string{"transport": "mqtt", "x": "<html>&amp;", "sep": "\u2028\u2029"}},
		{Action: ActionAuditRead, Actor: wire.Principal{Kind: wire.KindUser, ID: "bad\xffutf8"}, Target: strings.Repeat("x", 300)},
		{Action: ActionLogout},
	}
	var out [][]byte
	for i, e := range evs {
		e.Time = time.Date(2025, 3, 1, 12, 0, i, i*1001, time.UTC)
		r := NewRecord(Complete(t.Context(), e, e.Time))
		r.Seq = uint64(i * 99991)
		b, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// sameAsJSON checks that parseEntry decides as json.Unmarshal does.
func sameAsJSON(t *testing.T, entry []byte) {
	t.Helper()
	var want, got entryFields
	werr := json.Unmarshal(entry, &want)
	row := &Row{ActorKind: "user", ActorID: "alice", Action: ActionLogin, Outcome: Success}
	gerr := parseEntry(entry, row, &got)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: parseEntry err %v, json.Unmarshal err %v", entry, gerr, werr)
	}
	if werr == nil && (got.Seq != want.Seq || !got.Time.Equal(want.Time) || got.Time.Location() != want.Time.Location() || got.Actor != want.Actor || got.Action != want.Action || got.Target != want.Target || got.Outcome != want.Outcome) {
		t.Fatalf("%q:\nparseEntry   %+v\njson.Unmarshal %+v", entry, got, want)
	}
}

func TestParseEntryReadsWhatJSONReads(t *testing.T) {
	samples := entrySamples(t)
	t.Run("plain canonical entries take the hand-read path", func(t *testing.T) {
		for _, e := range samples[:3] {
			var fe entryFields
			if !fastEntry(e, &Row{}, &fe) {
				t.Errorf("not read by hand: %s", e)
			}
		}
	})
	t.Run("every sample, and every mutation of each, is decided as json.Unmarshal decides", func(t *testing.T) {
		for _, e := range samples {
			sameAsJSON(t, e)
			for i := range e {
				for _, c := range []byte{'"', '\\', '}', ',', ':', ' ', '0', '9', 'a', 0x00, 0x1f, 0x80, 0xff} {
					m := append([]byte(nil), e...)
					m[i] = c
					sameAsJSON(t, m)
				}
				sameAsJSON(t, e[:i])
				sameAsJSON(t, append(append(append([]byte(nil), e[:i]...), ' '), e[i:]...))
				sameAsJSON(t, append(append([]byte(nil), e[:i]...), e[i+1:]...))
			}
		}
	})
	t.Run("awkward but valid JSON is still read", func(t *testing.T) {
		for _, e := range []string{
			`{"seq":18446744073709551615,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"}`,
			`{"seq":18446744073709551616,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"}`,
			`{"seq":01,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"}`,
			`{"seq":1,"ts":"2025-03-01T12:00:00+02:00","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"}`,
			`{"seq":1,"ts":"2025-03-01 12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"}`,
			`{"seq":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success","details":{}}`,
			`{"seq":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success","details":{"a":1}}`,
			`{"seq":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success","extra":true}`,
			`{"seq":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success","seq":2}`,
			`{"SEQ":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"}`,
			`{"seq":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","target":null,"outcome":"success"}`,
			`{"seq":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"} `,
			`{"seq":1,"ts":"2025-03-01T12:00:00Z","actor":{"kind":"user","id":"a"},"action":"login","outcome":"success"}{}`,
		} {
			sameAsJSON(t, []byte(e))
		}
	})
}

func FuzzParseEntry(f *testing.F) {
	for _, e := range entrySamples(f) {
		f.Add(e)
	}
	f.Fuzz(func(t *testing.T, entry []byte) { sameAsJSON(t, entry) })
}
