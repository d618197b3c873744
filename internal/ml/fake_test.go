package ml

// A worker written in Go for the bridge's tests of what the shipped worker
// never does (garbage, a 2^31 length, silence): a fake at the transport
// edge. The shipped worker itself is tested through the same client in
// worker_test.go.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWorker serves the socket at path with handle, one goroutine per
// connection. handle gets each request and writes what it likes.
type fakeWorker struct {
	path  string
	ln    net.Listener
	mode  atomic.Value // string
	reqs  atomic.Int64
	mu    sync.Mutex
	seen  []Reading
	conns sync.WaitGroup
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startFake(t *testing.T, mode string) *fakeWorker {
	t.Helper()
	path := filepath.Join(shortDir(t), "w.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{path: path, ln: ln}
	w.mode.Store(mode)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			w.conns.Add(1)
			go func() {
				defer w.conns.Done()
				defer c.Close()
				w.serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return w
}

func (w *fakeWorker) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		body, err := ReadFrame(r, 0)
		if err != nil {
			return
		}
		w.reqs.Add(1)
		var req struct {
			RequestID string          `json:"request_id"`
			ModelID   string          `json:"model_id"`
			Data      json.RawMessage `json:"data"`
		}
		if json.Unmarshal(body, &req) != nil {
			return
		}
		reply := func(v any) {
			b, _ := json.Marshal(v)
			_ = WriteFrame(c, b)
		}
		mode := w.mode.Load().(string)
		if req.ModelID == "ping" && (mode == "normal" || mode == "slow" || mode == "refuse") {
			reply(map[string]any{"request_id": req.RequestID, "result": map[string]any{"series": 3}, "processing_time_ms": 0})
			continue
		}
		switch mode {
		case "garbage":
			c.Write([]byte("\x00\x00\x00\x05hello"))
			continue
		case "huge":
			c.Write(binary.BigEndian.AppendUint32(nil, 1<<31))
			continue
		case "silent":
			continue
		case "slow":
			time.Sleep(500 * time.Millisecond)
		case "wrong-id":
			reply(map[string]any{"request_id": "not-" + req.RequestID, "result": map[string]any{}})
			continue
		case "refuse":
			reply(map[string]any{"request_id": req.RequestID, "error": map[string]any{"code": "bad_request", "message": "no"}})
			continue
		case "hangup":
			return
		}
		var data ScoreRequest
		_ = json.Unmarshal(req.Data, &data)
		w.mu.Lock()
		w.seen = append(w.seen, data.Readings...)
		w.mu.Unlock()
		scores := make([]map[string]any, len(data.Readings))
		for i, rd := range data.Readings {
			s, anomalous := rd.Value/10, rd.Value > 100
			label := "normal"
			if anomalous {
				label = "anomaly"
			}
			scores[i] = map[string]any{"score": s, "anomaly": anomalous, "label": label}
		}
		reply(map[string]any{"request_id": req.RequestID, "result": map[string]any{"model": "anomaly", "version": "fake-1", "scores": scores},
			"processing_time_ms": 0.1})
	}
}

func (w *fakeWorker) readings() []Reading {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Reading(nil), w.seen...)
}
