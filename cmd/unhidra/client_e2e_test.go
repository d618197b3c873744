package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unhidra/unhidra/client"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/wire"
)

// flakyNet dials real TCP connections that the test can cut, and can refuse
// new ones: a network outage at the transport edge.
type flakyNet struct {
	mu    sync.Mutex
	conns []net.Conn
	down  atomic.Bool
}

func (f *flakyNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if f.down.Load() {
		return nil, errors.New("network is down")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
	}
	return c, err
}

func (f *flakyNet) cut() {
	f.down.Store(true)
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
}

func TestClientSDKAgainstTheRealServer(t *testing.T) {
	s := startDeviceServer(t, nil)
	pair := s.login(t, "admin", s.adminPW)
	r := s.gw(t, "POST", "/api/v1/channels", pair.AccessToken, map[string]any{"name": "sdk-e2e", "kind": "public"})
	s.want(t, r, http.StatusCreated, "create channel")
	var ch struct {
		ID string `json:"id"`
	}
	r.JSON(t, &ch)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(opts client.Options) *client.Client {
		opts.URL, opts.Token = s.wsURL(), pair.AccessToken
		opts.BackoffMin, opts.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
		c, err := client.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		go c.Run(ctx)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := c.WaitConnected(wctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var mu sync.Mutex
	var got []int64
	var gaps int
	nw := &flakyNet{}
	reader := start(client.Options{DialContext: nw.dial,
		OnMessage: func(m wire.MessageFrame) { mu.Lock(); got = append(got, m.Offset); mu.Unlock() },
		OnGap:     func(string, int64, int64) { mu.Lock(); gaps++; mu.Unlock() }})
	writer := start(client.Options{})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := reader.Subscribe(wctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	publish := func(text string) wire.Ack {
		ack, err := writer.Publish(wctx, wire.Publish{Channel: ch.ID, Text: &text})
		if err != nil {
			t.Fatalf("publish %q: %v", text, err)
		}
		return ack
	}
	waitOffsets := func(n int) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			k := len(got)
			mu.Unlock()
			if k >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("received %d messages, want %d", k, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("publish waits for the ack with the stored offset", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			if ack := publish(fmt.Sprint("m", i)); ack.Offset != int64(i) || ack.MessageID == "" {
				t.Fatalf("ack %d = %+v", i, ack)
			}
		}
		waitOffsets(3)
	})

	t.Run("after a network cut the subscriber recovers the missed messages in order, once", func(t *testing.T) {
		nw.cut()
		deadline := time.Now().Add(10 * time.Second)
		for reader.Stats().Connected {
			if time.Now().After(deadline) {
				t.Fatal("the reader did not notice the cut")
			}
			time.Sleep(10 * time.Millisecond)
		}
		publish("m4")
		publish("m5")
		nw.down.Store(false)
		waitOffsets(5)
		publish("m6")
		waitOffsets(6)
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(got) != "[1 2 3 4 5 6]" {
			t.Errorf("offsets = %v, want [1 2 3 4 5 6]", got)
		}
		if gaps != 0 {
			t.Errorf("%d gaps reported, want 0 (everything was in history)", gaps)
		}
	})

	t.Run("an in-band refresh is answered with the new expiry", func(t *testing.T) {
		r := s.call(t, "POST", "/token/refresh", "", map[string]string{"refresh_token": pair.RefreshToken})
		s.want(t, r, http.StatusOK, "refresh")
		var np struct {
			AccessToken string `json:"access_token"`
		}
		r.JSON(t, &np)
		e2etest.Secret("access token", np.AccessToken)
		exp, err := writer.Refresh(wctx, np.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if !exp.After(time.Now()) {
			t.Errorf("expires_at %v is not in the future", exp)
		}
	})

	t.Run("publishing to a channel one may not write to fails with forbidden", func(t *testing.T) {
		text := "x"
		_, err := writer.Publish(wctx, wire.Publish{Channel: "no-such-channel", Text: &text})
		var se *client.ServerError
		if !errors.As(err, &se) || (se.Code != "forbidden" && se.Code != "not_found") {
			t.Errorf("err = %v, want a forbidden server error", err)
		}
	})
}
