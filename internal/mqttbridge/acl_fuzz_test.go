package mqttbridge

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		name, in string
		want     topic
	}{
		{"a device telemetry topic", "unhidra/devices/d1/telemetry", topic{kind: topicDevice, id: "d1", sub: "telemetry", literal: true}},
		{"a device result topic keeps its two levels", "unhidra/devices/d1/commands/result", topic{kind: topicDevice, id: "d1", sub: "commands/result", literal: true}},
		{"a device wildcard filter", "unhidra/devices/+/telemetry", topic{kind: topicDevice, id: "+", sub: "telemetry"}},
		{"every device", "unhidra/devices/#", topic{kind: topicDevice, id: "#"}},
		{"a device with nothing below", "unhidra/devices/d1", topic{}},
		{"a channel", "unhidra/channels/device:d1/messages", topic{kind: topicChannel, id: "device:d1", sub: "messages", literal: true}},
		{"a channel's events", "unhidra/channels/general/events", topic{kind: topicChannel, id: "general", sub: "events", literal: true}},
		{"a channel with another leaf", "unhidra/channels/c/other", topic{}},
		{"another root", "other/devices/d1/telemetry", topic{}},
		{"an empty id", "unhidra/devices//telemetry", topic{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseTopic(tc.in); got != tc.want {
				t.Fatalf("parseTopic(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzACL checks invariants of the ACL over arbitrary topics and filters.
func FuzzACL(f *testing.F) {
	for _, s := range []string{
		"unhidra/devices/d1/telemetry", "unhidra/devices/d1/#", "unhidra/devices/+/commands", "#", "+/+",
		"$SYS/broker/uptime", "unhidra/channels/general/messages", "unhidra/channels/+/messages", "unhidra/channels/general/events",
		"unhidra/devices/d1/commands/result", "unhidra/devices/d1/../d2/telemetry", "unhidra//devices/d1/x",
	} {
		f.Add("d1", s, true, false, false)
		f.Add("alice", s, false, true, true)
	}
	f.Fuzz(func(t *testing.T, id, tp string, isDevice, write, admin bool) {
		who := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: id}}
		if isDevice {
			who.Principal.Kind = wire.KindDevice
		}
		if admin {
			who.Roles = []string{unhidra.RoleAdmin}
		}
		var looked []string
		no := func(x string) bool { looked = append(looked, x); return false }
		ok := allowed(aclRequest{who: who, topic: tp, write: write, readsDevice: no, canRead: no})
		if !ok {
			return
		}
		if write && strings.ContainsAny(tp, "+#") {
			t.Fatalf("write allowed to a wildcard topic %q", tp)
		}
		if strings.HasPrefix(tp, "$") && (isDevice || !admin || write) {
			t.Fatalf("%q allowed for device=%v admin=%v write=%v", tp, isDevice, admin, write)
		}
		if isDevice {
			prefix := "unhidra/devices/" + id + "/"
			if id == "" || strings.ContainsAny(id, "+#/") || !strings.HasPrefix(tp, prefix) {
				t.Fatalf("device %q allowed %q outside its subtree", id, tp)
			}
			return
		}
		if !admin && !write {
			t.Fatalf("user read of %q allowed although every lookup said no (%v)", tp, looked)
		}
		if write && !(strings.HasPrefix(tp, "unhidra/channels/") && strings.HasSuffix(tp, "/messages")) {
			t.Fatalf("user write allowed to %q", tp)
		}
	})
}

// TestMochiLogsAreFiltered: only errors pass, and not mochi's per-publish
// refusal lines (they quote the packet).
func TestMochiLogsAreFiltered(t *testing.T) {
	var b strings.Builder
	l := slog.New(levelFilter{h: slog.NewTextHandler(&b, nil), min: slog.LevelError})
	l.Warn("error processing packet", "pk", "secret-ish")
	l.Error("publish packet error", "packet", "payload")
	l.Error("listener failed")
	if got := b.String(); strings.Contains(got, "payload") || strings.Contains(got, "secret-ish") || !strings.Contains(got, "listener failed") {
		t.Fatalf("filtered log:\n%s", got)
	}
}

// FuzzParseTopic: parsing never panics and a parsed device or channel
// topic puts back together into the input.
func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{"unhidra/devices/d1/telemetry", "unhidra/channels/c/messages", "unhidra/devices/#", "unhidra//x", "unhidra/devices/d/commands/result"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := parseTopic(s)
		switch p.kind {
		case topicDevice:
			want := "unhidra/devices/" + p.id
			if p.sub != "" {
				want += "/" + p.sub
			}
			if want != s {
				t.Fatalf("device topic %q parsed as %+v", s, p)
			}
		case topicChannel:
			want := "unhidra/channels/" + p.id
			if p.sub != "" {
				want += "/" + p.sub
			}
			if want != s {
				t.Fatalf("channel topic %q parsed as %+v", s, p)
			}
		}
		if p.kind != topicOther && p.literal == strings.ContainsAny(p.id, "+#") {
			t.Fatalf("literal flag wrong for %q", s)
		}
	})
}

// FuzzDecodeChannelPublish: any payload either decodes to a Publish or is
// refused as invalid; never a panic.
func FuzzDecodeChannelPublish(f *testing.F) {
	for _, s := range []string{`{"text":"hi"}`, `{"data":{"a":1},"client_msg_id":"x"}`, `{"e2ee":{}}`, `[]`, ``, `{"text":5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := decodeChannelPublish(b)
		if err != nil {
			if unhidra.ErrorCode(err) != unhidra.EINVALID {
				t.Fatalf("code %q", unhidra.ErrorCode(err))
			}
			return
		}
		if in.Channel != "" && !strings.Contains(string(b), "channel") {
			t.Fatalf("channel %q appeared from nowhere", in.Channel)
		}
	})
}
