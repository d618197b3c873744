package chat_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

// The group-commit loop must not outlive its work: no goroutine may leak.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMetricsCountStoredAndDuplicateMessages(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	e := newEnv(t, chat.Options{Registerer: reg})
	ch := e.channel(t, alice, chat.KindPrivate)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "a"} {
		if _, err := e.svc.Publish(ctx, alice, wire.Publish{Channel: ch.ID, ClientMsgID: id, Text: txt("m")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := metricValue(t, reg, "unhidra_chat_messages_stored_total"); got != 2 {
		t.Errorf("stored = %v, want 2", got)
	}
	if got := metricValue(t, reg, "unhidra_chat_publish_duplicates_total"); got != 1 {
		t.Errorf("duplicates = %v, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "unhidra_chat_commit_batch_size" {
			if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() < 1 || h.GetSampleSum() != 3 {
				t.Errorf("batch size histogram: %d commits, %v appends; want ≥1 and 3", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
	// A second service on the same registry shares the collectors.
	_ = chat.NewService(e.st, e.bus, chat.Options{Registerer: reg})
}

func metricValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
