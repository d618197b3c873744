package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeClientFrameAcceptsEveryClientFrame(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, f ClientFrame)
	}{
		{"subscribe with since keeps the offset", `{"type":"subscribe","channel":"general","since":41,"id":7}`, func(t *testing.T, f ClientFrame) {
			if f.Channel != "general" || f.Since == nil || *f.Since != 41 || string(f.ID) != "7" {
				t.Errorf("got %+v", f)
			}
		}},
		{"subscribe without since leaves it nil", `{"type":"subscribe","channel":"device:abc"}`, func(t *testing.T, f ClientFrame) {
			if f.Since != nil || f.Channel != "device:abc" {
				t.Errorf("got %+v", f)
			}
		}},
		{"string id is echoed byte-exact", `{"type":"unsubscribe","channel":"c1","id":"a\u00e9b"}`, func(t *testing.T, f ClientFrame) {
			if string(f.ID) != `"a\u00e9b"` {
				t.Errorf("id = %s", f.ID)
			}
		}},
		{"publish with text", `{"type":"publish","channel":"c1","text":"hi","client_msg_id":"m-1","thread_id":"01HX"}`, func(t *testing.T, f ClientFrame) {
			p := f.Publish
			if p.Channel != "c1" || p.Text == nil || *p.Text != "hi" || p.ClientMsgID != "m-1" || p.ThreadID != "01HX" {
				t.Errorf("got %+v", p)
			}
		}},
		{"publish with data of any JSON", `{"type":"publish","channel":"c1","data":[1,2,3]}`, func(t *testing.T, f ClientFrame) {
			if string(f.Publish.Data) != "[1,2,3]" {
				t.Errorf("data = %s", f.Publish.Data)
			}
		}},
		{"publish with e2ee object", `{"type":"publish","channel":"c1","e2ee":{"v":1,"ct":"xx"}}`, func(t *testing.T, f ClientFrame) {
			if string(f.Publish.E2EE) != `{"v":1,"ct":"xx"}` {
				t.Errorf("e2ee = %s", f.Publish.E2EE)
			}
		}},
		{"typing", `{"type":"typing","channel":"c1"}`, func(t *testing.T, f ClientFrame) {
			if f.Channel != "c1" {
				t.Errorf("got %+v", f)
			}
		}},
		{"presence dnd", `{"type":"presence","status":"dnd"}`, func(t *testing.T, f ClientFrame) {
			if f.Status != StatusDND {
				t.Errorf("got %+v", f)
			}
		}},
		{"heartbeat keeps extra fields in Raw", `{"type":"heartbeat","device_id":"d1","ts":1700000000,"free_heap":1234,"rssi":-60}`, func(t *testing.T, f ClientFrame) {
			if f.DeviceID != "d1" || string(f.TS) != "1700000000" || f.FreeHeap == nil || *f.FreeHeap != 1234 || !bytes.Contains(f.Raw, []byte("rssi")) {
				t.Errorf("got %+v", f)
			}
		}},
		{"telemetry", `{"type":"telemetry","data":{"t":21.5},"seq":9,"ts":"2026-01-01T00:00:00Z"}`, func(t *testing.T, f ClientFrame) {
			if string(f.Data) != `{"t":21.5}` || f.Seq == nil || *f.Seq != 9 {
				t.Errorf("got %+v", f)
			}
		}},
		{"command_result", `{"type":"command_result","command_id":"c9","status":"error","result":{"e":"x"}}`, func(t *testing.T, f ClientFrame) {
			if f.CommandID != "c9" || f.Status != "error" || string(f.Result) != `{"e":"x"}` {
				t.Errorf("got %+v", f)
			}
		}},
		{"refresh", `{"type":"refresh","token":"abc.def.ghi"}`, func(t *testing.T, f ClientFrame) {
			if f.Token != "abc.def.ghi" {
				t.Errorf("got %+v", f)
			}
		}},
		{"unknown fields are ignored", `{"type":"typing","channel":"c1","extra":{"deep":[1]}}`, func(t *testing.T, f ClientFrame) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DecodeClientFrame([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeClientFrame: %v", err)
			}
			tt.check(t, f)
		})
	}
}

func TestDecodeClientFrameRefusesMalformedFrames(t *testing.T) {
	long := strings.Repeat("x", MaxChannelIDLen+1)
	tests := []struct {
		name string
		in   string
		code string
	}{
		{"empty input", ``, CodeInvalid},
		{"a JSON array", `[1]`, CodeInvalid},
		{"invalid JSON", `{"type":`, CodeInvalid},
		{"trailing garbage", `{"type":"typing","channel":"c"} x`, CodeInvalid},
		{"no type", `{"channel":"c"}`, CodeInvalid},
		{"type of the wrong kind", `{"type":1}`, CodeInvalid},
		{"unknown type", `{"type":"shutdown"}`, CodeInvalid},
		{"a server frame type", `{"type":"welcome"}`, CodeInvalid},
		{"object id", `{"type":"typing","channel":"c","id":{}}`, CodeInvalid},
		{"bool id", `{"type":"typing","channel":"c","id":true}`, CodeInvalid},
		{"overlong id", `{"type":"typing","channel":"c","id":"` + strings.Repeat("i", 80) + `"}`, CodeInvalid},
		{"subscribe without channel", `{"type":"subscribe"}`, CodeInvalid},
		{"channel with a slash", `{"type":"subscribe","channel":"a/b"}`, CodeInvalid},
		{"channel with a space", `{"type":"subscribe","channel":"a b"}`, CodeInvalid},
		{"overlong channel", `{"type":"subscribe","channel":"` + long + `"}`, CodeInvalid},
		{"negative since", `{"type":"subscribe","channel":"c","since":-1}`, CodeInvalid},
		{"fractional since", `{"type":"subscribe","channel":"c","since":1.5}`, CodeInvalid},
		{"string since", `{"type":"subscribe","channel":"c","since":"1"}`, CodeInvalid},
		{"publish without a body", `{"type":"publish","channel":"c"}`, CodeInvalid},
		{"publish with text and data", `{"type":"publish","channel":"c","text":"a","data":1}`, CodeInvalid},
		{"publish with text and e2ee", `{"type":"publish","channel":"c","text":"a","e2ee":{}}`, CodeInvalid},
		{"publish with e2ee as a string", `{"type":"publish","channel":"c","e2ee":"abc"}`, CodeInvalid},
		{"publish with empty text", `{"type":"publish","channel":"c","text":""}`, CodeInvalid},
		{"publish with oversized text", `{"type":"publish","channel":"c","text":"` + strings.Repeat("a", MaxTextBytes+1) + `"}`, CodeTooLarge},
		{"publish with oversized data", `{"type":"publish","channel":"c","data":"` + strings.Repeat("a", MaxDataBytes) + `"}`, CodeTooLarge},
		{"publish with overlong client_msg_id", `{"type":"publish","channel":"c","text":"a","client_msg_id":"` + strings.Repeat("m", MaxClientMsgIDLen+1) + `"}`, CodeInvalid},
		{"publish with a control character in client_msg_id", `{"type":"publish","channel":"c","text":"a","client_msg_id":"a\nb"}`, CodeInvalid},
		{"presence offline is not settable", `{"type":"presence","status":"offline"}`, CodeInvalid},
		{"presence without status", `{"type":"presence"}`, CodeInvalid},
		{"heartbeat without device_id", `{"type":"heartbeat","ts":1}`, CodeInvalid},
		{"heartbeat without ts", `{"type":"heartbeat","device_id":"d"}`, CodeInvalid},
		{"heartbeat with object ts", `{"type":"heartbeat","device_id":"d","ts":{}}`, CodeInvalid},
		{"telemetry with array data", `{"type":"telemetry","data":[1]}`, CodeInvalid},
		{"telemetry without data", `{"type":"telemetry"}`, CodeInvalid},
		{"command_result with bad status", `{"type":"command_result","command_id":"c","status":"done"}`, CodeInvalid},
		{"command_result without id", `{"type":"command_result","status":"ok"}`, CodeInvalid},
		{"refresh without token", `{"type":"refresh"}`, CodeInvalid},
		{"frame over the size limit", `{"type":"typing","channel":"c","pad":"` + strings.Repeat("p", MaxFrameBytes) + `"}`, CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeClientFrame([]byte(tt.in))
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *FrameError", err)
			}
			if fe.Code != tt.code {
				t.Errorf("code = %q, want %q (%s)", fe.Code, tt.code, fe.Message)
			}
		})
	}
}

func TestDecodeClientFrameKeepsIDOnError(t *testing.T) {
	f, err := DecodeClientFrame([]byte(`{"type":"nope","id":"x1"}`))
	if err == nil {
		t.Fatal("unknown type accepted")
	}
	if string(f.ID) != `"x1"` {
		t.Errorf("id = %s, want \"x1\"", f.ID)
	}
}

func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","channel":"general","since":41,"id":7}`,
		`{"type":"publish","channel":"c1","text":"hi","client_msg_id":"m-1"}`,
		`{"type":"publish","channel":"c1","e2ee":{"v":1}}`,
		`{"type":"heartbeat","device_id":"d1","ts":1,"free_heap":3}`,
		`{"type":"telemetry","data":{"t":1},"seq":2}`,
		`{"type":"command_result","command_id":"c","status":"ok"}`,
		`{"type":"refresh","token":"t"}`,
		`{"type":"presence","status":"away"}`,
		`{"type":"x","id":"\u0000"}`,
		`[]`, `null`, `{"type":"publish","channel":"c","data":null,"text":"a"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeClientFrame(b)
		if fr.ID != nil {
			if err := validID(fr.ID); err != nil {
				t.Fatalf("returned an invalid id %q", fr.ID)
			}
		}
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) || (fe.Code != CodeInvalid && fe.Code != CodeTooLarge) {
				t.Fatalf("error %v is not a FrameError with a known code", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		switch fr.Type {
		case TypeSubscribe, TypeUnsubscribe, TypeTyping:
			if !ValidChannelID(fr.Channel) {
				t.Fatalf("accepted channel %q", fr.Channel)
			}
		case TypePublish:
			p := fr.Publish
			n := 0
			if p.Text != nil {
				n++
			}
			if p.Data != nil {
				n++
			}
			if p.E2EE != nil {
				n++
				if p.E2EE[0] != '{' {
					t.Fatalf("accepted non-object e2ee %s", p.E2EE)
				}
			}
			if n != 1 {
				t.Fatalf("publish with %d bodies accepted", n)
			}
			if !ValidChannelID(p.Channel) {
				t.Fatalf("accepted channel %q", p.Channel)
			}
		case TypePresence, TypeHeartbeat, TypeTelemetry, TypeCommandResult, TypeRefresh:
		default:
			t.Fatalf("accepted unknown type %q", fr.Type)
		}
	})
}
