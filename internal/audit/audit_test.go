package audit_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/wire"
)

func TestLogWritesOneRecordPerEvent(t *testing.T) {
	var b bytes.Buffer
	var r audit.Recorder = audit.Slog{Log: slog.New(slog.NewTextHandler(&b, nil))}
	r.Audit(context.Background(), audit.Event{Action: audit.ActionDeviceRevoke, Actor: wire.Principal{Kind: wire.KindUser, ID: "alice"}, Target: "gh-1", Outcome: audit.Success})
	r.Audit(context.Background(), audit.Event{Action: audit.ActionLogin, Actor: wire.Principal{Kind: wire.KindUser, ID: "bob"}, IP: "192.0.2.1", Outcome: audit.Failure, Reason: "bad credentials"})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d records, want 2:\n%s", len(lines), b.String())
	}
	for i, want := range []string{
		`msg=audit action=device_revoke actor=user:alice outcome=success target=gh-1`,
		`msg=audit action=login actor=user:bob outcome=failure ip=192.0.2.1 reason="bad credentials"`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("record %d = %s, want %s", i+1, lines[i], want)
		}
	}
	if strings.Contains(lines[1], "target=") || strings.Contains(lines[0], "ip=") {
		t.Errorf("empty fields were written:\n%s", b.String())
	}
	audit.Slog{}.Audit(context.Background(), audit.Event{}) // no logger: nothing, no panic
}
