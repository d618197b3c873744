package systemtest

// WS-10 against the real binary: raw WebSocket clients, each subscribed to
// one channel, ride through kill -9 and a restart of `unhidra serve` on the
// same ports and data dir. Every client reconnects with exponential backoff
// and full jitter and subscribes with `since` = the last offset it saw. The
// checker holds that every client is back within 60 s, that each client's
// offsets grow by exactly 1 over the whole test (no gap, no duplicate)
// whenever the server answered recovered:true, that recovered:false comes
// only for a gap beyond the recovery window, that what clients received is
// the REST history (ids match), and that every acked publish is stored.
//
// Limits: the storm comes from 127.0.0.1 alone, so the child runs with the
// per-IP handshake limit and the per-user connection limit raised (the
// limiters have their own tests; this one is about crash recovery, and
// spreading 5,000 clients over 127.0.0.x would need ~170 source addresses
// to stay under 60 handshakes per address per minute across the kills).

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// stormPlan sizes one run.
type stormPlan struct {
	clients  int
	users    int
	channels int
	rate     float64       // messages per second per channel
	between  time.Duration // publishing before the first kill, between kills and after the last
	kills    int
	// Laggards (soak): clients of one extra "hot" channel that stay away
	// after the last kill until more than the recovery window was posted
	// there, so the server must answer recovered:false.
	laggards int
	hotPubs  int // publishers on the hot channel (each under the per-connection rate limit)
}

// TestReconnectStormRecoversBySinceAfterKill9 is WS-10 in make check: 300
// clients over 6 channels, one kill -9 while messages flow; every gap is
// inside the window, so every resubscribe must be recovered:true.
func TestReconnectStormRecoversBySinceAfterKill9(t *testing.T) {
	stormRun(t, stormPlan{clients: 300, users: 3, channels: 6, rate: 10, between: 1500 * time.Millisecond, kills: 1})
}

// TestSoakReconnectStormRecoversBySinceAfterKill9 is WS-10 in full: 5,000
// clients over 50 channels, two kill -9, plus laggards on a hot channel that
// come back only after the window has passed them by.
func TestSoakReconnectStormRecoversBySinceAfterKill9(t *testing.T) {
	soak(t)
	stormRun(t, stormPlan{clients: 5000, users: 5, channels: 50, rate: 3, between: 4 * time.Second, kills: 2, laggards: 10, hotPubs: 3})
}

const (
	stormWindow     = 1000 // docs/protocol.md#client-frames: the recovery window in messages
	stormBackoff    = 100 * time.Millisecond
	stormBackoffCap = 5 * time.Second
	stormBackWithin = 60 * time.Second
)

// stormChannel is the checker's view of one channel: the id every client
// saw at each offset (the first client to see an offset records it, the
// others must agree), compared with the REST history at the end.
type stormChannel struct {
	id  string
	mu  sync.Mutex
	ids map[int64]string
}

func (ch *stormChannel) see(off int64, id string) (prev string, ok bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if p, seen := ch.ids[off]; seen {
		return p, p == id
	}
	ch.ids[off] = id
	return id, true
}

// stormClient is one raw WebSocket client; its fields are written by its
// own goroutine only, except the atomics.
type stormClient struct {
	n       int
	ch      *stormChannel
	token   string
	laggard bool

	last     atomic.Int64 // last offset delivered in order
	backGen  atomic.Int64 // the restart generation of its current subscription
	conn     atomic.Pointer[e2etest.WSConn]
	received int // message frames accepted
	first    int64
	subs     int // resubscribes with since > 0
	recTrue  int
	recFalse int
	gapsOK   int // offsets skipped after a recovered:false (fetch via REST)
	replayed int // missed messages a recovered:true resubscribe replayed
	problems []string
}

func (c *stormClient) problem(format string, args ...any) {
	if len(c.problems) < 5 {
		c.problems = append(c.problems, fmt.Sprintf("client %d on %s: ", c.n, c.ch.id)+fmt.Sprintf(format, args...))
	}
}

// storm is the shared state of a run.
type storm struct {
	c       *e2etest.Child
	gen     atomic.Int64 // restarts so far
	stop    atomic.Bool  // clients end
	pubStop atomic.Bool  // publishers end
	pubErrs []string     // under mu
	mu      sync.Mutex
	backAt  map[int64][]time.Duration // per restart: each client's time back
	restart map[int64]time.Time
	holdLag atomic.Bool // laggards stay away while set
	frames  atomic.Int64
	closes  sync.Map // close code → *atomic.Int64
}

func (s *storm) countClose(code int) {
	v, _ := s.closes.LoadOrStore(code, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// sleepJitter sleeps a random time in [0, min(cap, base·2^attempt)).
func sleepJitter(attempt int) {
	b := stormBackoff << min(attempt, 10)
	time.Sleep(rand.N(min(b, stormBackoffCap)))
}

// run is a client's life: connect, subscribe with since, read until the
// connection dies, back off with full jitter, again, until the test stops.
func (s *storm) run(c *stormClient) {
	attempt := -1 // the very first connect goes at once
	for !s.stop.Load() {
		if attempt >= 0 {
			sleepJitter(attempt)
		}
		attempt++
		if c.laggard && s.holdLag.Load() {
			attempt = 0
			continue
		}
		gen := s.gen.Load()
		ws, err := e2etest.TryWS(s.c.WSURL, "unhidra.v1, bearer."+c.token)
		if err != nil {
			continue
		}
		c.conn.Store(ws)
		if s.stop.Load() {
			ws.Close()
			return
		}
		if s.session(c, ws, gen) {
			attempt = 0
		}
		ws.Close()
	}
}

// session subscribes and reads one connection; it reports whether the
// subscription was answered (so the backoff starts again from its base).
func (s *storm) session(c *stormClient, ws *e2etest.WSConn, gen int64) bool {
	since := c.last.Load()
	if err := ws.WriteJSON(map[string]any{"type": wire.TypeSubscribe, "id": "s", "channel": c.ch.id, "since": since}); err != nil {
		return false
	}
	subscribed := false
	for {
		f, err := ws.TryRead(90 * time.Second)
		if err != nil {
			if code, ok := asClose(err); ok {
				s.countClose(code)
			}
			return subscribed
		}
		s.frames.Add(1)
		switch f.Type {
		case wire.TypeSubscribed:
			if s.gen.Load() != gen {
				// A restart began between the dial and this answer: the
				// answer may come from the killed process (read from the
				// socket buffer). Dial again so a client counts as back
				// only on a connection surely made to the new process.
				return false
			}
			subscribed = true
			resub := since > 0 || gen > 0
			if resub {
				c.subs++
			}
			if f.Recovered {
				if resub {
					c.recTrue++
				}
				if f.Offset < since {
					c.problem("subscribed at offset %d below since %d", f.Offset, since)
				}
				c.replayed += int(f.Offset - since)
			} else {
				c.recFalse++
				if f.Offset-since <= stormWindow {
					c.problem("recovered:false for a gap of %d messages (since %d, offset %d), inside the window of %d", f.Offset-since, since, f.Offset, stormWindow)
				}
				// The missed messages are to be fetched via REST: live
				// ones continue after the offset the server reported.
				c.gapsOK += int(f.Offset - since)
				c.last.Store(f.Offset)
			}
			s.mu.Lock()
			if _, ok := s.restart[gen]; ok && c.backGen.Load() < gen && !c.laggard {
				s.backAt[gen] = append(s.backAt[gen], time.Since(s.restart[gen]))
			}
			s.mu.Unlock()
			c.backGen.Store(gen)
		case wire.TypeMessage:
			if !subscribed {
				c.problem("message before subscribed")
			}
			var m struct {
				ID     string `json:"id"`
				Offset int64  `json:"offset"`
			}
			if err := json.Unmarshal(f.Message, &m); err != nil || m.ID == "" || m.Offset != f.Offset {
				c.problem("bad message frame %s", f.Raw)
				continue
			}
			last := c.last.Load()
			switch {
			case m.Offset <= last:
				c.problem("offset %d again after %d (duplicate or disorder)", m.Offset, last)
				continue
			case m.Offset != last+1:
				c.problem("offset %d after %d: a gap of %d", m.Offset, last, m.Offset-last-1)
			}
			if prev, ok := c.ch.see(m.Offset, m.ID); !ok {
				c.problem("offset %d is %s here, %s for another client", m.Offset, m.ID, prev)
			}
			if c.first == 0 {
				c.first = m.Offset
			}
			c.received++
			c.last.Store(m.Offset)
		case wire.TypeError:
			c.problem("error frame %s", f.Raw)
			return subscribed
		}
	}
}

// publish posts to one channel at a steady rate, one publish in
// flight, reconnecting with backoff when the server dies; unacked messages
// are not resent (they may or may not be stored).
func (s *storm) publish(tok, channel, prefix string, every time.Duration, acks *ackLog, sent *atomic.Int64) {
	attempt := -1
	k := 0
	for !s.pubStop.Load() {
		if attempt >= 0 {
			sleepJitter(attempt)
		}
		attempt++
		ws, err := e2etest.TryWS(s.c.WSURL, "unhidra.v1, bearer."+tok)
		if err != nil {
			continue
		}
		attempt = 0
		next := time.Now()
		for !s.pubStop.Load() {
			time.Sleep(time.Until(next))
			next = next.Add(every)
			k++
			id := fmt.Sprintf("%s-%d", prefix, k)
			if ws.WriteJSON(map[string]any{"type": wire.TypePublish, "id": id, "channel": channel, "client_msg_id": id, "text": "storm " + id}) != nil {
				break
			}
			sent.Add(1)
			f, err := ws.TryRead(10 * time.Second)
			if err != nil {
				break
			}
			if f.Type == wire.TypeAck {
				if err := acks.add(id, wire.Ack{Channel: f.Channel, MessageID: f.MessageID, Offset: f.Offset}); err != nil {
					s.mu.Lock()
					s.pubErrs = append(s.pubErrs, err.Error())
					s.mu.Unlock()
				}
			}
			if time.Until(next) < -time.Second {
				next = time.Now() // fell behind (a slow ack): no burst to catch up
			}
		}
		ws.Close()
	}
}

func stormRun(t *testing.T, p stormPlan) {
	begin := time.Now()
	c := e2etest.NewChild(t, map[string]string{
		"ACCESS_TOKEN_TTL":         "24h",
		"MAX_CONNECTIONS_PER_USER": fmt.Sprint(p.clients + 100),
		"LOG_LEVEL":                "error",
	})
	c.Start()
	s := &storm{c: c, backAt: map[int64][]time.Duration{}, restart: map[int64]time.Time{}}

	// Users, all members of every channel (private, created by the admin).
	admin := c.Login(t, "admin", c.AdminPW)
	var names, tokens []string
	for i := range p.users {
		name := fmt.Sprintf("storm%d", i)
		pw := e2etest.Secret("password", "storm-pw-"+name+"-"+e2etest.RandomHex(4))
		e2etest.WantStatus(t, e2etest.HTTPCall(t, c.AuthURL, "POST", "/register", "", map[string]string{"username": name, "password": pw}), 201, "register "+name)
		tokens = append(tokens, c.Login(t, name, pw))
		names = append(names, name)
	}
	mkChannel := func(name string) *stormChannel {
		r := e2etest.HTTPCall(t, c.GWURL, "POST", "/api/v1/channels", admin, map[string]any{"name": name, "kind": "private", "members": names})
		e2etest.WantStatus(t, r, 201, "create channel "+name)
		var ch struct {
			ID string `json:"id"`
		}
		e2etest.Decode(t, r, &ch)
		return &stormChannel{id: ch.ID, ids: map[int64]string{}}
	}
	chans := make([]*stormChannel, p.channels)
	for i := range chans {
		chans[i] = mkChannel(fmt.Sprintf("storm-%d", i))
	}
	var hot *stormChannel
	if p.laggards > 0 {
		hot = mkChannel("storm-hot")
	}

	// Clients: laggards and as many punctual ones on the hot channel, the
	// rest spread over the ordinary channels.
	clients := make([]*stormClient, p.clients)
	for i := range clients {
		cl := &stormClient{n: i, token: tokens[i%len(tokens)]}
		cl.backGen.Store(-1)
		switch {
		case i < p.laggards:
			cl.ch, cl.laggard = hot, true
		case i < 2*p.laggards:
			cl.ch = hot
		default:
			cl.ch = chans[i%len(chans)]
		}
		clients[i] = cl
	}
	// Generation 0 is the first connect: every client subscribes (since 0,
	// an empty channel) before anything is posted.
	s.restart[0] = time.Now()
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Go(func() { s.run(cl) })
	}
	var pubs sync.WaitGroup
	stopAll := sync.OnceFunc(func() {
		s.pubStop.Store(true)
		pubs.Wait()
		s.stop.Store(true)
		for _, cl := range clients {
			if ws := cl.conn.Load(); ws != nil {
				ws.Close()
			}
		}
		wg.Wait()
	})
	t.Cleanup(stopAll)

	allBack := func(gen int64, within time.Duration) time.Duration {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			missing := 0
			for _, cl := range clients {
				if cl.backGen.Load() < gen && !(cl.laggard && s.holdLag.Load()) {
					missing++
				}
			}
			if missing == 0 {
				s.mu.Lock()
				defer s.mu.Unlock()
				return time.Since(s.restart[gen])
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d clients not back within %v of restart %d", missing, len(clients), within, gen)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	connected := allBack(0, 60*time.Second)
	t.Logf("%d clients connected and subscribed in %v", p.clients, connected.Round(time.Millisecond))

	// Publishers: one per channel at p.rate; on the hot channel hotPubs at
	// 40/s each (under the 50 frames/s per-connection limit).
	acks := &ackLog{acks: map[string]wire.Ack{}}
	var sent atomic.Int64
	every := time.Duration(float64(time.Second) / p.rate)
	for i, ch := range chans {
		pubs.Go(func() { s.publish(tokens[i%len(tokens)], ch.id, fmt.Sprintf("c%d", i), every, acks, &sent) })
	}
	for i := range p.hotPubs {
		pubs.Go(func() {
			s.publish(tokens[i%len(tokens)], hot.id, fmt.Sprintf("hot%d", i), 25*time.Millisecond, acks, &sent)
		})
	}

	var readies []time.Duration
	var backs []time.Duration
	for k := 1; k <= p.kills; k++ {
		time.Sleep(p.between)
		if k == p.kills && p.laggards > 0 {
			s.holdLag.Store(true)
		}
		before := acks.len()
		c.Kill()
		s.mu.Lock()
		s.restart[int64(k)] = time.Now()
		s.mu.Unlock()
		s.gen.Store(int64(k))
		readies = append(readies, c.Start())
		back := allBack(int64(k), stormBackWithin)
		backs = append(backs, back)
		t.Logf("kill %d (%d publishes acked before it): ready after %v, every punctual client back after %v",
			k, before, readies[k-1].Round(time.Millisecond), back.Round(time.Millisecond))
	}
	if p.laggards > 0 {
		// Keep the laggards away until the hot channel moved on by more
		// than the window past the furthest of them.
		var far int64
		for _, cl := range clients[:p.laggards] {
			far = max(far, cl.last.Load())
		}
		deadline := time.Now().Add(90 * time.Second)
		for {
			h := historyAfter(t, c.GWURL, hot.id, tokens[0], far+stormWindow)
			if len(h) > 20 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("hot channel did not pass offset %d", far+stormWindow)
			}
			time.Sleep(500 * time.Millisecond)
		}
		s.holdLag.Store(false)
		allBack(int64(p.kills), stormBackWithin)
	}
	time.Sleep(p.between)
	s.pubStop.Store(true)
	pubs.Wait()

	// Every client drains to the last offset of its channel.
	hist := map[*stormChannel][]wire.Message{}
	all := slices.Clone(chans)
	if hot != nil {
		all = append(all, hot)
	}
	for _, ch := range all {
		hist[ch] = e2etest.History(t, c.GWURL, ch.id, tokens[0])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		behind := 0
		for _, cl := range clients {
			if cl.last.Load() < int64(len(hist[cl.ch])) {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d clients did not reach the end of their channel within 30 s", behind)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopAll()

	// The checker.
	var problems []string
	checked, resubs, recTrue, recFalse, skipped, replayed := 0, 0, 0, 0, 0, 0
	for _, cl := range clients {
		problems = append(problems, cl.problems...)
		checked += cl.received
		resubs += cl.subs
		recTrue += cl.recTrue
		recFalse += cl.recFalse
		skipped += cl.gapsOK
		replayed += cl.replayed
		n := int64(len(hist[cl.ch]))
		if cl.first != 1 || cl.last.Load() != n {
			problems = append(problems, fmt.Sprintf("client %d saw offsets %d..%d of %d", cl.n, cl.first, cl.last.Load(), n))
		}
		if cl.laggard && cl.recFalse == 0 {
			problems = append(problems, fmt.Sprintf("laggard %d was never answered recovered:false", cl.n))
		}
		if cl.ch != hot && cl.recFalse > 0 {
			problems = append(problems, fmt.Sprintf("client %d answered recovered:false %d times", cl.n, cl.recFalse))
		}
	}
	stored := 0
	for _, ch := range all {
		h := hist[ch]
		stored += len(h)
		for i, m := range h {
			if m.Offset != int64(i+1) {
				problems = append(problems, fmt.Sprintf("history of %s: offset %d at position %d", ch.id, m.Offset, i+1))
				break
			}
			if id, ok := ch.ids[m.Offset]; !ok {
				problems = append(problems, fmt.Sprintf("history of %s: offset %d reached no client", ch.id, m.Offset))
			} else if id != m.ID {
				problems = append(problems, fmt.Sprintf("history of %s: offset %d is %s, clients got %s", ch.id, m.Offset, m.ID, id))
			}
		}
		if len(ch.ids) != len(h) {
			problems = append(problems, fmt.Sprintf("channel %s: clients saw %d offsets, history has %d", ch.id, len(ch.ids), len(h)))
		}
	}
	byID := map[string]wire.Message{}
	for _, ch := range all {
		for _, m := range hist[ch] {
			byID[m.ClientMsgID] = m
		}
	}
	lost := 0
	acks.mu.Lock()
	for id, a := range acks.acks {
		m, ok := byID[id]
		if !ok || m.ID != a.MessageID || m.Offset != a.Offset {
			lost++
		}
	}
	acked := len(acks.acks)
	acks.mu.Unlock()
	problems = append(problems, s.pubErrs...)
	if lost > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d acked publishes not in history as acked", lost, acked))
	}
	if acked == 0 || stored == 0 {
		problems = append(problems, "nothing was published")
	}
	if recTrue == 0 || replayed == 0 {
		problems = append(problems, fmt.Sprintf("%d resubscribes recovered:true replaying %d messages: recovery by since was not exercised", recTrue, replayed))
	}
	if len(problems) > 0 {
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("… and %d more", len(problems)-20))
		}
		t.Fatalf("WS-10 checker:\n%s", strings.Join(problems, "\n"))
	}

	var dist []string
	for k := int64(1); k <= int64(p.kills); k++ {
		b := slices.Clone(s.backAt[k])
		slices.Sort(b)
		if len(b) > 0 {
			dist = append(dist, fmt.Sprintf("restart %d: median %v, p99 %v, last %v (%d clients)", k,
				b[len(b)/2].Round(time.Millisecond), b[len(b)*99/100].Round(time.Millisecond), b[len(b)-1].Round(time.Millisecond), len(b)))
		}
	}
	var closes []string
	s.closes.Range(func(k, v any) bool {
		closes = append(closes, fmt.Sprintf("%v×%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("WS-10: %d clients on %d channels, %d kill -9; time to all back: %v; %s",
		p.clients, len(all), p.kills, backs, strings.Join(dist, "; "))
	t.Logf("WS-10: %d resubscribes: %d recovered:true (replaying %d missed messages), %d recovered:false (%d offsets left to REST); %d messages received and checked against %d stored (%d publishes sent, %d acked, 0 lost); close frames seen %v; %v in all",
		resubs, recTrue, replayed, recFalse, skipped, checked, stored, sent.Load(), acked, closes, time.Since(begin).Round(time.Second))
}
