package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/internal/device"
	"github.com/unhidra/unhidra/wire"
)

// Telemetry runs the conformance suite of device.FleetStore's telemetry:
// what a stored point reads back as (QueryTelemetry), pruning, and the
// devices' last_seen moved by the points. Each subtest starts with user
// alice and her devices d1 and d2 in the registry.
//
// Points are written only through storePoints, the one place to change
// when the write path does.
func Telemetry(t *testing.T, open func(t *testing.T) DeviceStores) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st DeviceStores)
	}{
		{"a point reads back with every field", testTelemetryRoundTrip},
		{"a query covers since to until, half open, oldest first, at most limit", testTelemetryRange},
		{"points of one timestamp read back in the order they were stored", testTelemetryTies},
		{"a query sees only its device's points", testTelemetryPerDevice},
		{"points move their device's last_seen forward, never back", testTelemetryLastSeen},
		{"pruning deletes the points before the cutoff and counts them", testTelemetryPrune},
		{"concurrent writes all land and readers see whole batches", testTelemetryConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			aliceWithDevices(t, st.Users, st.Registry)
			tc.fn(t, st)
		})
	}
}

// storePoints writes points in one batch.
func storePoints(t *testing.T, st DeviceStores, points ...device.TelemetryPoint) {
	t.Helper()
	if err := st.Fleet.AppendTelemetry(context.Background(), points); err != nil {
		t.Fatalf("AppendTelemetry(%d points): %v", len(points), err)
	}
}

// telPoint is point i of dev, taken at devT0+at and received then.
func telPoint(dev string, at time.Duration, i int) device.TelemetryPoint {
	seq := int64(i)
	ts := devT0.Add(at)
	return device.TelemetryPoint{DeviceID: dev, TS: ts, Seq: &seq, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), ReceivedAt: ts}
}

func queryPoints(t *testing.T, st DeviceStores, dev string, since, until time.Time, limit int) []device.TelemetryPoint {
	t.Helper()
	pts, err := st.Fleet.QueryTelemetry(context.Background(), dev, since, until, limit)
	if err != nil {
		t.Fatalf("QueryTelemetry(%s): %v", dev, err)
	}
	return pts
}

func seqs(pts []device.TelemetryPoint) string {
	var out []string
	for _, p := range pts {
		if p.Seq == nil {
			out = append(out, "-")
		} else {
			out = append(out, fmt.Sprint(*p.Seq))
		}
	}
	return fmt.Sprint(out)
}

var (
	allTime = devT0.Add(-24 * time.Hour)
	endTime = devT0.Add(24 * time.Hour)
)

func testTelemetryRoundTrip(t *testing.T, st DeviceStores) {
	full := telPoint("d1", time.Second, 7)
	full.TS = devT0.Add(123456789 * time.Nanosecond)
	full.ReceivedAt = devT0.Add(2 * time.Second)
	full.Data = json.RawMessage(`{"temp":21.5,"tags":["a","b"],"nested":{"x":null}}`)
	noSeq := telPoint("d1", 3*time.Second, 0)
	noSeq.Seq = nil
	storePoints(t, st, full, noSeq)
	got := queryPoints(t, st, "d1", allTime, endTime, 10)
	if len(got) != 2 {
		t.Fatalf("QueryTelemetry = %d points, want 2", len(got))
	}
	p := got[0]
	var gotData, wantData any
	if err := json.Unmarshal(p.Data, &gotData); err != nil {
		t.Fatalf("stored data %q is not JSON: %v", p.Data, err)
	}
	_ = json.Unmarshal(full.Data, &wantData)
	if p.DeviceID != "d1" || !p.TS.Equal(full.TS) || !p.ReceivedAt.Equal(full.ReceivedAt) || p.Seq == nil || *p.Seq != 7 || fmt.Sprint(gotData) != fmt.Sprint(wantData) {
		t.Errorf("point = %+v (data %s), want %+v (data %s)", p, p.Data, full, full.Data)
	}
	if got[1].Seq != nil {
		t.Errorf("a point without seq reads back with seq %d, want none", *got[1].Seq)
	}
	if err := st.Fleet.AppendTelemetry(context.Background(), nil); err != nil {
		t.Errorf("AppendTelemetry(no points) = %v, want nil", err)
	}
}

func testTelemetryRange(t *testing.T, st DeviceStores) {
	var batch []device.TelemetryPoint
	for i := 9; i >= 0; i-- { // stored newest first
		batch = append(batch, telPoint("d1", time.Duration(i)*time.Second, i))
	}
	storePoints(t, st, batch...)
	at := func(s int) time.Time { return devT0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name         string
		since, until time.Time
		limit        int
		want         string
	}{
		{"since is inclusive and until exclusive", at(2), at(5), 100, "[2 3 4]"},
		{"the limit keeps the oldest", allTime, endTime, 4, "[0 1 2 3]"},
		{"an empty range holds nothing", at(3), at(3), 100, "[]"},
		{"a range past the newest holds nothing", at(10), endTime, 100, "[]"},
		{"everything, oldest first", allTime, endTime, 100, "[0 1 2 3 4 5 6 7 8 9]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := seqs(queryPoints(t, st, "d1", tc.since, tc.until, tc.limit)); got != tc.want {
				t.Errorf("seqs = %s, want %s", got, tc.want)
			}
		})
	}
}

func testTelemetryTies(t *testing.T, st DeviceStores) {
	storePoints(t, st, telPoint("d1", time.Second, 3), telPoint("d1", time.Second, 1))
	storePoints(t, st, telPoint("d1", time.Second, 2), telPoint("d1", 0, 9))
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 10)); got != "[9 3 1 2]" {
		t.Errorf("seqs = %s, want [9 3 1 2] (by ts, then in the order stored)", got)
	}
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 2)); got != "[9 3]" {
		t.Errorf("seqs(limit 2) = %s, want [9 3]", got)
	}
}

func testTelemetryPerDevice(t *testing.T, st DeviceStores) {
	storePoints(t, st, telPoint("d1", 0, 1), telPoint("d2", 0, 2), telPoint("d1", time.Second, 3))
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 10)); got != "[1 3]" {
		t.Errorf("d1 = %s, want [1 3]", got)
	}
	d2 := queryPoints(t, st, "d2", allTime, endTime, 10)
	if seqs(d2) != "[2]" || d2[0].DeviceID != "d2" {
		t.Errorf("d2 = %+v, want its one point", d2)
	}
	if got := queryPoints(t, st, "nope", allTime, endTime, 10); len(got) != 0 {
		t.Errorf("an unknown device has %d points, want none", len(got))
	}
}

func testTelemetryLastSeen(t *testing.T, st DeviceStores) {
	lastSeen := func(id string) *time.Time {
		t.Helper()
		return getDevice(t, st.Registry, id).LastSeen
	}
	// Steps an hour apart: far beyond any store's last_seen resolution.
	storePoints(t, st, telPoint("d1", 0, 1))
	if ls := lastSeen("d1"); ls == nil || !ls.Equal(devT0) {
		t.Errorf("last_seen after the first point = %v, want %v", ls, devT0)
	}
	storePoints(t, st, telPoint("d1", -time.Hour, 2))
	if ls := lastSeen("d1"); ls == nil || !ls.Equal(devT0) {
		t.Errorf("last_seen after an older point = %v, want %v kept", ls, devT0)
	}
	storePoints(t, st, telPoint("d1", 2*time.Hour, 3), telPoint("d1", time.Hour, 4))
	if ls := lastSeen("d1"); ls == nil || !ls.Equal(devT0.Add(2*time.Hour)) {
		t.Errorf("last_seen after a batch = %v, want the newest received_at %v", ls, devT0.Add(2*time.Hour))
	}
	if ls := lastSeen("d2"); ls != nil {
		t.Errorf("d2's last_seen = %v, want none (no points)", ls)
	}
	if d := getDevice(t, st.Registry, "d1"); d.Online {
		t.Error("telemetry set the device online; only SetOnline does")
	}
}

func testTelemetryPrune(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	var batch []device.TelemetryPoint
	for i := 0; i < 10; i++ {
		batch = append(batch, telPoint("d1", time.Duration(i)*time.Minute, i), telPoint("d2", time.Duration(i)*time.Minute, 100+i))
	}
	storePoints(t, st, batch...)
	n, err := st.Fleet.PruneTelemetry(ctx, devT0.Add(4*time.Minute))
	if err != nil || n != 8 {
		t.Errorf("PruneTelemetry = %d, %v; want 8 (4 of each device)", n, err)
	}
	if got := seqs(queryPoints(t, st, "d1", allTime, endTime, 100)); got != "[4 5 6 7 8 9]" {
		t.Errorf("d1 after pruning = %s, want [4 5 6 7 8 9] (the point at the cutoff kept)", got)
	}
	if got := queryPoints(t, st, "d2", allTime, endTime, 100); len(got) != 6 {
		t.Errorf("d2 after pruning = %s, want 6 points", seqs(got))
	}
	if n, err := st.Fleet.PruneTelemetry(ctx, devT0.Add(4*time.Minute)); err != nil || n != 0 {
		t.Errorf("PruneTelemetry again = %d, %v; want 0", n, err)
	}
}

func testTelemetryConcurrent(t *testing.T, st DeviceStores) {
	ctx := context.Background()
	const writers, batches, per = 4, 10, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	done := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				var pts []device.TelemetryPoint
				for i := 0; i < per; i++ {
					n := (w*batches+b)*per + i
					pts = append(pts, telPoint("d1", time.Duration(n)*time.Millisecond, n))
				}
				if err := st.Fleet.AppendTelemetry(ctx, pts); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// A reader alongside: a batch is stored whole, so it never sees a
	// count that is not a multiple of the batch size.
	written := make(chan struct{})
	go func() {
		defer close(done)
		for {
			last := false
			select {
			case <-written:
				last = true
			default:
			}
			pts, err := st.Fleet.QueryTelemetry(ctx, "d1", allTime, endTime, writers*batches*per+1)
			if err != nil {
				errs <- err
				return
			}
			if len(pts)%per != 0 {
				errs <- fmt.Errorf("a reader saw %d points, not whole batches of %d", len(pts), per)
				return
			}
			if last {
				return
			}
		}
	}()
	wg.Wait()
	close(written)
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := queryPoints(t, st, "d1", allTime, endTime, writers*batches*per+10)
	if len(got) != writers*batches*per {
		t.Fatalf("%d points stored, want %d", len(got), writers*batches*per)
	}
	for i, p := range got {
		if *p.Seq != int64(i) {
			t.Fatalf("point %d has seq %d: lost or duplicated", i, *p.Seq)
		}
	}
}

// TelemetryStores are the stores of one empty, migrated database in which
// a telemetry point is stored in the same transaction as the
// device-channel message that relays it (chat.Append.Telemetry): the
// device stores and the chat store on the same data.
type TelemetryStores struct {
	DeviceStores
	Chat chat.Store
}

// TelemetryWithMessages runs the conformance suite of the point a chat
// append carries: it is stored in its message's transaction, both or
// neither, reads back through the fleet store like a point of
// AppendTelemetry and moves its device's last_seen alike. Each subtest
// starts with user alice, her devices d1 and d2 and d1's channel device:d1.
func TelemetryWithMessages(t *testing.T, open func(t *testing.T) TelemetryStores) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st TelemetryStores)
	}{
		{"a point stored with its message reads back with every field and moves last_seen", testPointWithMessage},
		{"an append whose message is not stored stores no point", testPointNotWithoutMessage},
		{"a batch that fails stores neither its messages nor their points", testPointBatchFails},
		{"readers never see a message without its point or a point without its message", testPointAtomicWithMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			aliceWithDevices(t, st.Users, st.Registry)
			ch := chat.Channel{ID: wire.DeviceChannel("d1"), Name: "d1", Kind: chat.KindDevice, CreatedBy: "alice", CreatedAt: devT0}
			if err := st.Chat.CreateChannel(context.Background(), ch, "", []chat.Member{{User: "alice", Role: chat.RoleOwner, JoinedAt: devT0}}); err != nil {
				t.Fatalf("CreateChannel(device:d1): %v", err)
			}
			tc.fn(t, st)
		})
	}
}

// telemetryAppend is d1's device-channel message relaying point p.
func telemetryAppend(p device.TelemetryPoint) chat.Append {
	seq := int64(-1)
	if p.Seq != nil {
		seq = *p.Seq
	}
	return chat.Append{
		Msg: wire.Message{
			ID: ulid.Make().String(), Channel: wire.DeviceChannel(p.DeviceID), Sender: wire.Principal{Kind: wire.KindDevice, ID: p.DeviceID},
			CreatedAt: p.ReceivedAt, Data: json.RawMessage(fmt.Sprintf(`{"type":"telemetry","seq":%d,"data":%s}`, seq, p.Data)),
		},
		Telemetry: &p,
	}
}

// channelSeqs returns the seqs the telemetry messages of device:d1 carry,
// in offset order.
func channelSeqs(t *testing.T, st TelemetryStores) string {
	t.Helper()
	msgs, err := st.Chat.MessagesAfter(context.Background(), wire.DeviceChannel("d1"), 0, 10000)
	if err != nil {
		t.Fatalf("MessagesAfter(device:d1): %v", err)
	}
	var out []string
	for _, m := range msgs {
		var ev struct{ Seq int64 }
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("message data %q: %v", m.Data, err)
		}
		out = append(out, fmt.Sprint(ev.Seq))
	}
	return fmt.Sprint(out)
}

func testPointWithMessage(t *testing.T, st TelemetryStores) {
	p := telPoint("d1", time.Second, 7)
	p.TS = devT0.Add(123456789 * time.Nanosecond)
	p.ReceivedAt = devT0.Add(2 * time.Second)
	p.Data = json.RawMessage(`{"temp":21.5,"tags":["a","b"]}`)
	rs, err := st.Chat.AppendMessages(context.Background(), []chat.Append{telemetryAppend(p)})
	if err != nil || len(rs) != 1 || rs[0].Err != nil || rs[0].Msg.Offset != 1 {
		t.Fatalf("AppendMessages = %+v, %v; want the message at offset 1", rs, err)
	}
	got := queryPoints(t, st.DeviceStores, "d1", allTime, endTime, 10)
	if len(got) != 1 {
		t.Fatalf("QueryTelemetry = %d points, want the 1 its message carried", len(got))
	}
	var gotData, wantData any
	_ = json.Unmarshal(got[0].Data, &gotData)
	_ = json.Unmarshal(p.Data, &wantData)
	if g := got[0]; g.DeviceID != "d1" || !g.TS.Equal(p.TS) || !g.ReceivedAt.Equal(p.ReceivedAt) || g.Seq == nil || *g.Seq != 7 || fmt.Sprint(gotData) != fmt.Sprint(wantData) {
		t.Errorf("point = %+v (data %s), want %+v (data %s)", g, g.Data, p, p.Data)
	}
	if ls := getDevice(t, st.Registry, "d1").LastSeen; ls == nil || !ls.Equal(p.ReceivedAt) {
		t.Errorf("last_seen = %v, want the point's received_at %v", ls, p.ReceivedAt)
	}
	if ls := getDevice(t, st.Registry, "d2").LastSeen; ls != nil {
		t.Errorf("d2's last_seen = %v, want none", ls)
	}
	// A message without a point stores none.
	plain := telemetryAppend(telPoint("d1", 0, 8))
	plain.Telemetry = nil
	if rs, err := st.Chat.AppendMessages(context.Background(), []chat.Append{plain}); err != nil || rs[0].Err != nil {
		t.Fatalf("a message without a point: %+v, %v", rs, err)
	}
	if got := seqs(queryPoints(t, st.DeviceStores, "d1", allTime, endTime, 10)); got != "[7]" {
		t.Errorf("points after a message without one = %s, want [7]", got)
	}
}

func testPointNotWithoutMessage(t *testing.T, st TelemetryStores) {
	ctx := context.Background()
	first := telemetryAppend(telPoint("d1", 0, 1))
	first.Msg.ClientMsgID = "c1"
	gone := telemetryAppend(telPoint("d2", time.Second, 2)) // device:d2 does not exist
	orphan := telemetryAppend(telPoint("d1", 2*time.Second, 3))
	orphan.Msg.ThreadID = ulid.Make().String() // a reply to no message
	dup := telemetryAppend(telPoint("d1", 3*time.Second, 4))
	dup.Msg.ClientMsgID = "c1" // the first message again
	last := telemetryAppend(telPoint("d1", 4*time.Second, 5))
	rs, err := st.Chat.AppendMessages(ctx, []chat.Append{first, gone, orphan, dup, last})
	if err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	if len(rs) != 5 || rs[0].Err != nil || rs[4].Err != nil || rs[4].Msg.Offset != 2 {
		t.Fatalf("results %+v, want the first and the last stored, at offsets 1 and 2", rs)
	}
	if unhidra.ErrorCode(rs[1].Err) != unhidra.ENOTFOUND || rs[2].Err == nil || !rs[3].Duplicate {
		t.Fatalf("results %+v, want not_found for the missing channel, an error for the orphan reply, a duplicate", rs)
	}
	if got := seqs(queryPoints(t, st.DeviceStores, "d1", allTime, endTime, 10)); got != "[1 5]" {
		t.Errorf("d1's points = %s, want [1 5]: only those of stored messages", got)
	}
	if got := queryPoints(t, st.DeviceStores, "d2", allTime, endTime, 10); len(got) != 0 {
		t.Errorf("d2 has %d points, want none: its channel does not exist", len(got))
	}
	if ls := getDevice(t, st.Registry, "d2").LastSeen; ls != nil {
		t.Errorf("d2's last_seen = %v, want none: its point was not stored", ls)
	}
	if ls := getDevice(t, st.Registry, "d1").LastSeen; ls == nil || !ls.Equal(devT0.Add(4*time.Second)) {
		t.Errorf("d1's last_seen = %v, want %v (the duplicate's point was not stored)", ls, devT0.Add(4*time.Second))
	}
}

func testPointBatchFails(t *testing.T, st TelemetryStores) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	batch := []chat.Append{telemetryAppend(telPoint("d1", 0, 1)), telemetryAppend(telPoint("d1", time.Second, 2))}
	if _, err := st.Chat.AppendMessages(ctx, batch); err == nil {
		t.Fatal("AppendMessages with an ended context succeeded")
	}
	if got := channelSeqs(t, st); got != "[]" {
		t.Errorf("messages after a failed batch = %s, want none", got)
	}
	if got := queryPoints(t, st.DeviceStores, "d1", allTime, endTime, 10); len(got) != 0 {
		t.Errorf("points after a failed batch = %s, want none", seqs(got))
	}
	if ls := getDevice(t, st.Registry, "d1").LastSeen; ls != nil {
		t.Errorf("last_seen after a failed batch = %v, want none", ls)
	}
}

func testPointAtomicWithMessage(t *testing.T, st TelemetryStores) {
	ctx := context.Background()
	const batches, per = 40, 5
	errs := make(chan error, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := 0; b < batches; b++ {
			var batch []chat.Append
			for i := 0; i < per; i++ {
				n := b*per + i
				batch = append(batch, telemetryAppend(telPoint("d1", time.Duration(n)*time.Millisecond, n)))
			}
			if _, err := st.Chat.AppendMessages(ctx, batch); err != nil {
				errs <- err
				return
			}
		}
	}()
	// Each side read before the other bounds it: what one read sees
	// committed, a later read of the other side sees too.
	count := func() (msgs, points int, err error) {
		ms, err := st.Chat.MessagesAfter(ctx, wire.DeviceChannel("d1"), 0, batches*per+1)
		if err != nil {
			return 0, 0, err
		}
		ps, err := st.Fleet.QueryTelemetry(ctx, "d1", allTime, endTime, batches*per+1)
		return len(ms), len(ps), err
	}
	countPointsFirst := func() (msgs, points int, err error) {
		ps, err := st.Fleet.QueryTelemetry(ctx, "d1", allTime, endTime, batches*per+1)
		if err != nil {
			return 0, 0, err
		}
		ms, err := st.Chat.MessagesAfter(ctx, wire.DeviceChannel("d1"), 0, batches*per+1)
		return len(ms), len(ps), err
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		m, p, err := count()
		if err != nil {
			t.Fatal(err)
		}
		if p < m {
			t.Fatalf("a reader saw %d messages and then only %d points: a message without its point", m, p)
		}
		m, p, err = countPointsFirst()
		if err != nil {
			t.Fatal(err)
		}
		if m < p {
			t.Fatalf("a reader saw %d points and then only %d messages: a point without its message", p, m)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m, p, _ := count(); m != batches*per || p != batches*per {
		t.Fatalf("%d messages and %d points stored, want %d of each", m, p, batches*per)
	}
}
