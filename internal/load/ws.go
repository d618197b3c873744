package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/unhidra/unhidra/internal/procfs"
)

// WSConfig is a run of `unhidra bench ws`: the flags, one field each.
type WSConfig struct {
	URL, AuthURL          string
	Conns, Channels       int
	Publishers            int
	Rate                  float64 // messages per second, all publishers together
	Size                  int
	Duration              time.Duration
	ServerPID             int
	Spawn, Idle           bool
	Token                 string
	AdminUser, AdminPass  string
	PerUser               int
	SrcIPs                int
	Concurrency           int
	Centrifugo            bool
	CentrifugoAPI         string
	CentrifugoAPIKey      string
	CentrifugoSecret      string
	CentrifugoChannelPref string

	// BeforePublish, when set (tests), runs before each publish with the
	// context that ends with the measurement: a test holds a publish back
	// past the end, as a slow write would be.
	BeforePublish func(measuring context.Context, publisher int, seq int64)
}

// benchWriteTimeout bounds one publish write. Writes do not use the
// measurement's context: the WebSocket library closes a connection whose
// write context ends mid-write, and the bench would then see its own close
// as a dropped connection.
const benchWriteTimeout = 10 * time.Second

// wsProto is what differs between Unhidra and Centrifugo.
type wsProto interface {
	// open dials connection i, authenticates and subscribes it.
	open(ctx context.Context, i int, channel string) (*websocket.Conn, error)
	// publish sends one message from publisher conn (nil for HTTP publishing).
	publish(ctx context.Context, conn *websocket.Conn, channel string, payload []byte, id int64) error
}

// BenchWS runs `unhidra bench ws`: connections, channels and publishers;
// the figures go to stdout, progress to stderr.
func BenchWS(ctx context.Context, stdout, stderr io.Writer, cfg WSConfig) error {
	var err error
	out := stdout
	if cfg.Spawn {
		srv, err := spawnServer(ctx, stderr)
		if err != nil {
			return err
		}
		defer srv.Stop()
		cfg.URL, cfg.AuthURL, cfg.AdminPass, cfg.ServerPID = srv.WSURL, srv.AuthURL, srv.AdminPassword, srv.PID()
		cfg.PerUser = 0
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}

	var proto wsProto
	channels := make([]string, cfg.Channels)
	setupStart := time.Now()
	if cfg.Centrifugo {
		for j := range channels {
			channels[j] = fmt.Sprintf("%s%d", cfg.CentrifugoChannelPref, j)
		}
		proto = &centrifugoProto{cfg: cfg, host: u.Host, hc: &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	} else {
		up, err := setupUnhidraWS(ctx, cfg, channels, stderr)
		if err != nil {
			return err
		}
		proto = up
	}
	fmt.Fprintf(out, "setup: %s\n", time.Since(setupStart).Round(time.Millisecond))

	var rss0 int64
	if cfg.ServerPID > 0 {
		if rss0, err = settledRSS(ctx, cfg.ServerPID); err != nil {
			return fmt.Errorf("--server-pid: %w", err)
		}
	}

	// Connect.
	conns := make([]*websocket.Conn, cfg.Conns)
	// selfClosed[i] is set before the bench closes connection i itself (a
	// stalled write, the end of the run), so that its reader does not count
	// the close as the server's.
	selfClosed := make([]atomic.Bool, cfg.Conns)
	lat := newLatencies(1_000_000)
	// readErrs counts connections the server closed or dropped; benchClosed
	// those the bench closed before the end (a write stalled for
	// benchWriteTimeout).
	var delivered, connErrs, readErrs, errFrames, benchClosed atomic.Int64
	var closeMu sync.Mutex
	closeCodes := map[string]int{}
	var firstErr atomic.Value
	readCtx, stopReaders := context.WithCancel(context.Background())
	defer stopReaders()
	var readers sync.WaitGroup
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	connectStart := time.Now()
	half := cfg.Conns / 2
	var rssHalf int64
	var pauseDur time.Duration
	for i := 0; i < cfg.Conns; i++ {
		if ctx.Err() != nil {
			break
		}
		if i == half && cfg.ServerPID > 0 && half >= 100 {
			// Memory per connection is also measured over the second half
			// only: by then the server's allocator has absorbed what
			// start-up and logins freed, which otherwise hides (or
			// inflates) the connections' own cost.
			wg.Wait()
			p0 := time.Now()
			rssHalf, _ = settledRSS(ctx, cfg.ServerPID)
			pauseDur = time.Since(p0)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			// The context given to the dial must live as long as the
			// connection: cancelling it after the handshake can close
			// the upgraded connection. The 30 s bound applies to the
			// opening only.
			cctx, cancel := context.WithCancel(ctx)
			bound := time.AfterFunc(30*time.Second, cancel)
			c, err := proto.open(cctx, i, channels[i%len(channels)])
			if !bound.Stop() && err == nil {
				err = errors.New("opening took longer than 30 s")
				c.CloseNow()
			}
			if err != nil {
				cancel()
				connErrs.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			conns[i] = c
			readers.Add(1)
			go func() {
				defer readers.Done()
				defer cancel()
				for {
					_, b, err := c.Read(readCtx)
					if err != nil {
						// Closes after the readers were stopped, after
						// Ctrl-C, or by the bench itself are not the
						// server's.
						if readCtx.Err() == nil && ctx.Err() == nil && !selfClosed[i].Load() {
							readErrs.Add(1)
							why := "no close frame"
							if cs := websocket.CloseStatus(err); cs != -1 {
								why = strconv.Itoa(int(cs))
							}
							closeMu.Lock()
							closeCodes[why]++
							closeMu.Unlock()
						}
						return
					}
					if cfg.Centrifugo && len(b) <= 3 && bytes.Equal(bytes.TrimSpace(b), []byte("{}")) {
						// Centrifugo's application-level ping wants a pong.
						_ = c.Write(readCtx, websocket.MessageText, []byte("{}"))
						continue
					}
					now := time.Now()
					n := benchTimestamps(b, func(t time.Time) { lat.add(now.Sub(t)) })
					delivered.Add(int64(n))
					if n == 0 && bytes.Contains(b, []byte(`"type":"error"`)) {
						if errFrames.Add(1) == 1 {
							firstErr.CompareAndSwap(nil, fmt.Errorf("error frame: %s", b))
						}
					}
				}
			}()
		}(i)
	}
	wg.Wait()
	connectDur := time.Since(connectStart) - pauseDur
	ok := int64(cfg.Conns) - connErrs.Load()
	fmt.Fprintf(out, "connected: %d of %d in %s (%.0f conn/s) over %d source address(es)\n",
		ok, cfg.Conns, connectDur.Round(time.Millisecond), float64(ok)/connectDur.Seconds(), cfg.SrcIPs)
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Fprintf(out, "connect errors: %d (first: %v)\n", connErrs.Load(), err)
	}
	if ok == 0 {
		return errors.New("no connection succeeded")
	}
	if cfg.ServerPID > 0 {
		rss1, err := settledRSS(ctx, cfg.ServerPID)
		if err == nil {
			fmt.Fprintf(out, "server RSS: %s before, %s after connecting: %s per connection on average\n",
				fmtBytes(rss0), fmtBytes(rss1), fmtBytes((rss1-rss0)/ok))
			if rssHalf > 0 && ok > int64(half) {
				fmt.Fprintf(out, "server RSS: %s at %d connections, %s at %d: %s per connection over the second half\n",
					fmtBytes(rssHalf), half, fmtBytes(rss1), ok, fmtBytes((rss1-rssHalf)/(ok-int64(half))))
			}
		}
	}

	if cfg.Idle {
		fmt.Fprintf(out, "idle: holding %d connections for %s\n", ok, cfg.Duration)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Duration):
		}
		if cfg.ServerPID > 0 {
			if rss, err := procfs.RSS(cfg.ServerPID); err == nil {
				fmt.Fprintf(out, "server RSS after holding: %s (%s per connection)\n", fmtBytes(rss), fmtBytes((rss-rss0)/ok))
			}
		}
		fmt.Fprintf(out, "dropped while idle: %d\n", readErrs.Load())
		stopReaders()
		closeAll(conns, selfClosed)
		readers.Wait()
		return nil
	}

	// Publish.
	var published, pubErrs atomic.Int64
	pubLat := newLatencies(200_000)
	pubCtx, stopPub := context.WithTimeout(ctx, cfg.Duration)
	defer stopPub()
	perPub := 0.0
	if cfg.Publishers > 0 {
		perPub = cfg.Rate / float64(cfg.Publishers)
	}
	if perPub > 50 && !cfg.Centrifugo {
		fmt.Fprintf(stderr, "bench: warning: %.0f msg/s per publisher is above the gateway's 50 frames/s per connection; raise --publishers\n", perPub)
	}
	subsPerChannel := make([]int64, cfg.Channels)
	for i, c := range conns {
		if c != nil {
			subsPerChannel[i%cfg.Channels]++
		}
	}
	var expected atomic.Int64
	var pwg sync.WaitGroup
	pubStart := time.Now()
	for p := 0; p < cfg.Publishers && perPub > 0; p++ {
		c := conns[p]
		if c == nil && !cfg.Centrifugo {
			continue
		}
		pwg.Add(1)
		go func(p int, c *websocket.Conn) {
			defer pwg.Done()
			interval := time.Duration(float64(time.Second) / perPub)
			// Spread the publishers' phases over one interval.
			next := time.Now().Add(time.Duration(float64(interval) * float64(p) / float64(cfg.Publishers)))
			for seq := int64(0); ; seq++ {
				if d := time.Until(next); d > 0 {
					select {
					case <-pubCtx.Done():
						return
					case <-time.After(d):
					}
				}
				if pubCtx.Err() != nil {
					return
				}
				next = next.Add(interval)
				ch := (p + int(seq)*cfg.Publishers) % cfg.Channels
				if cfg.BeforePublish != nil {
					cfg.BeforePublish(pubCtx, p, seq)
				}
				t0 := time.Now()
				wctx, cancel := context.WithTimeout(ctx, benchWriteTimeout)
				err := proto.publish(wctx, c, channels[ch], benchPayload(t0, seq, cfg.Size), seq)
				stalled := wctx.Err() != nil
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if stalled && c != nil {
						// The library closed the connection with the
						// write: the bench's close, not the server's.
						if !selfClosed[p].Swap(true) {
							benchClosed.Add(1)
						}
						pubErrs.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Errorf("publish write stalled for %s: %w", benchWriteTimeout, err))
						return
					}
					pubErrs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				pubLat.add(time.Since(t0))
				published.Add(1)
				expected.Add(subsPerChannel[ch])
			}
		}(p, c)
	}
	// Live counts.
	stopProgress := progress(pubCtx, stderr, func() string {
		return fmt.Sprintf("%s published=%d delivered=%d errors=%d dropped=%d",
			time.Since(pubStart).Round(time.Second), published.Load(), delivered.Load(), pubErrs.Load(), readErrs.Load())
	})
	pwg.Wait()
	stopProgress()
	pubDur := time.Since(pubStart)
	// Let in-flight deliveries land.
	deadline := time.Now().Add(5 * time.Second)
	for delivered.Load() < expected.Load() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(out, "published: %d in %s (%.0f msg/s, target %.0f), errors %d; publish call (Unhidra: frame written; Centrifugo: HTTP API answered) %s\n",
		published.Load(), pubDur.Round(time.Millisecond), float64(published.Load())/pubDur.Seconds(), cfg.Rate, pubErrs.Load(), pubLat.summary())
	fmt.Fprintf(out, "delivered: %d of %d expected (%.0f deliveries/s), connections dropped %d, error frames %d\n",
		delivered.Load(), expected.Load(), float64(delivered.Load())/pubDur.Seconds(), readErrs.Load(), errFrames.Load())
	if n := benchClosed.Load(); n > 0 {
		fmt.Fprintf(out, "connections the bench closed itself (a publish write stalled for %s): %d\n", benchWriteTimeout, n)
	}
	fmt.Fprintf(out, "end-to-end latency: %s\n", lat.summary())
	closeMu.Lock()
	if len(closeCodes) > 0 {
		fmt.Fprintf(out, "connections closed by the server, by close code: %v\n", closeCodes)
	}
	closeMu.Unlock()
	if cfg.ServerPID > 0 {
		if rss, err := procfs.RSS(cfg.ServerPID); err == nil {
			fmt.Fprintf(out, "server RSS at the end: %s\n", fmtBytes(rss))
		}
	}
	if err, _ := firstErr.Load().(error); err != nil && pubErrs.Load()+errFrames.Load() > 0 {
		fmt.Fprintf(out, "first error: %v\n", err)
	}
	stopReaders()
	closeAll(conns, selfClosed)
	readers.Wait()
	return nil
}

// closeAll closes the connections with a normal closure, marking each as
// closed by the bench first.
func closeAll(conns []*websocket.Conn, selfClosed []atomic.Bool) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i, c := range conns {
		if c == nil {
			continue
		}
		selfClosed[i].Store(true)
		sem <- struct{}{}
		wg.Add(1)
		go func(c *websocket.Conn) {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c.Close(websocket.StatusNormalClosure, "")
			_ = ctx
		}(c)
	}
	wg.Wait()
}
