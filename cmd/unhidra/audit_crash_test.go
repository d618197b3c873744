package main

// The audit log under kill -9 of the whole server: the real `unhidra
// serve` binary in a child process (e2etest.Child) takes audited actions
// from concurrent clients (device registrations, channel creations, failed
// logins of distinct names) and is killed with actions in flight. After
// each kill, with no server running, `unhidra audit verify --checkpoint`
// with a checkpoint fetched during the load exits 0; after the restart
// every acknowledged action's record is served by GET /api/v1/audit
// exactly once, no record appears twice or out of nowhere, and the
// checkpoints saved before each crash are consistent with the log after
// it (a consistency proof from the proof route verifies).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
	"github.com/unhidra/unhidra/internal/e2etest"
	"github.com/unhidra/unhidra/internal/redact"
)

// The kinds of audited action the load makes, and the record each leaves.
const (
	crashDevice  = "device"  // POST /devices: device_register, target the device id
	crashChannel = "channel" // POST /api/v1/channels: channel_create, target the channel id
	crashLogin   = "login"   // POST /login, a wrong password: login failure, actor the name's hash
)

// crashAction is one action: its kind and the key its record is found by
// (the device id, the channel id or the actor id).
type crashAction struct{ kind, key string }

// crashLoad is what the clients did: every action tried (for kinds whose
// key is known before the answer) and every action acknowledged, by an
// answer received before the kill.
type crashLoad struct {
	mu    sync.Mutex
	tried map[crashAction]bool
	acked []crashAction
	last  map[int]crashAction // each client's last acknowledged action
	errs  []string            // unexpected answers
}

func (l *crashLoad) try(a crashAction) {
	l.mu.Lock()
	l.tried[a] = true
	l.mu.Unlock()
}

func (l *crashLoad) ack(client int, a crashAction) {
	l.mu.Lock()
	l.acked = append(l.acked, a)
	l.last[client] = a
	l.mu.Unlock()
}

func (l *crashLoad) fail(format string, args ...any) {
	l.mu.Lock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *crashLoad) nacked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *crashLoad) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs
}

// crashCall is one JSON request that tolerates the server dying under it:
// err is the transport's error (the action is then not acknowledged).
func crashCall(hc *http.Client, method, url, bearer string, body any) (int, []byte, error) {
	j, _ := json.Marshal(body)
	req, err := http.NewRequest(method, url, bytes.NewReader(j))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(res.Body); err != nil {
		return 0, nil, err
	}
	return res.StatusCode, b.Bytes(), nil
}

// crashClient makes actions one after another until the server stops
// answering: two device registrations, two channel creations and a failed
// login in every five.
func crashClient(c *e2etest.Child, hc *http.Client, admin string, round, client int, l *crashLoad) {
	for i := 0; ; i++ {
		name := fmt.Sprintf("ac-r%d-c%d-%d", round, client, i)
		var a crashAction
		var status int
		var body []byte
		var err error
		switch i % 5 {
		case 0, 2:
			a = crashAction{crashDevice, name}
			l.try(a)
			status, body, err = crashCall(hc, "POST", c.AuthURL+"/devices", admin, map[string]string{"name": name, "device_id": name})
		case 1, 3:
			a = crashAction{kind: crashChannel}
			status, body, err = crashCall(hc, "POST", c.GWURL+"/api/v1/channels", admin, map[string]any{"name": name, "kind": "private"})
		default:
			a = crashAction{crashLogin, redact.Hash(name)}
			l.try(a)
			status, body, err = crashCall(hc, "POST", c.AuthURL+"/login", "", map[string]string{"username": name, "password": "not-the-password-" + name})
		}
		if err != nil {
			return // killed: this action is not acknowledged
		}
		switch {
		case a.kind == crashChannel && status == http.StatusCreated:
			var ch struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(body, &ch) != nil || ch.ID == "" {
				l.fail("channel %s: an answer without an id: %s", name, body)
				return
			}
			a.key = ch.ID
		case a.kind == crashDevice && status == http.StatusCreated:
		// A refused login is audited whether the password was checked
		// (401) or the server was too busy to check it (503).
		case a.kind == crashLogin && (status == http.StatusUnauthorized || status == http.StatusServiceUnavailable):
		default:
			l.fail("%s %s: %d %s", a.kind, name, status, body)
			return
		}
		l.ack(client, a)
	}
}

// auditRecords pages through every record of the query (filters of GET
// /api/v1/audit), oldest first.
func auditRecords(t *testing.T, c *e2etest.Child, admin, query string) []audit.Record {
	t.Helper()
	var all []audit.Record
	for after := int64(-1); ; {
		path := fmt.Sprintf("/api/v1/audit?%s&limit=%d", query, audit.MaxPage)
		if after >= 0 {
			path += fmt.Sprintf("&after=%d", after)
		}
		r := e2etest.HTTPCall(t, c.GWURL, "GET", path, admin, nil)
		e2etest.WantStatus(t, r, http.StatusOK, "GET "+path)
		var p audit.Page
		r.JSON(t, &p)
		all = append(all, p.Records...)
		if p.Next < 0 || len(p.Records) == 0 {
			return all
		}
		after = p.Next
	}
}

// served counts the records of the load's kinds by key.
func served(t *testing.T, c *e2etest.Child, admin string) map[crashAction]int {
	t.Helper()
	n := map[crashAction]int{}
	for _, r := range auditRecords(t, c, admin, "action="+audit.ActionDeviceRegister+"&outcome=success") {
		n[crashAction{crashDevice, r.Target}]++
	}
	for _, r := range auditRecords(t, c, admin, "action="+audit.ActionChannelCreate+"&outcome=success") {
		n[crashAction{crashChannel, r.Target}]++
	}
	for _, r := range auditRecords(t, c, admin, "action="+audit.ActionLogin+"&outcome=failure") {
		n[crashAction{crashLogin, r.Actor.ID}]++
	}
	return n
}

// checkRecords asserts that every acknowledged action has exactly one
// record and that no device or login record is doubled or was never tried.
// It returns how many were stored but not acknowledged (in flight at a
// kill).
func checkRecords(t *testing.T, c *e2etest.Child, admin string, l *crashLoad) (unacked int) {
	t.Helper()
	n := served(t, c, admin)
	acked := map[crashAction]bool{}
	for _, a := range l.acked {
		acked[a] = true
	}
	for _, a := range l.acked {
		if n[a] != 1 {
			t.Errorf("acknowledged %s %s: %d records, want 1", a.kind, a.key, n[a])
		}
	}
	for client, a := range l.last {
		if n[a] == 0 {
			t.Errorf("client %d's last acknowledged action (%s %s) has no record", client, a.kind, a.key)
		}
	}
	for a, k := range n {
		if a.kind == crashChannel {
			continue // device registrations create channels of their own
		}
		if !l.tried[a] {
			t.Errorf("a record of %s %s, never tried", a.kind, a.key)
		} else if k != 1 {
			t.Errorf("%s %s: %d records", a.kind, a.key, k)
		}
		if !acked[a] {
			unacked++
		}
	}
	return unacked
}

// fetchCheckpoint returns the served checkpoint, opened with vkey.
func fetchCheckpoint(t *testing.T, c *e2etest.Child, admin string, vkey note.Verifier) ([]byte, audit.Checkpoint) {
	t.Helper()
	r := e2etest.HTTPCall(t, c.GWURL, "GET", "/api/v1/audit/checkpoint", admin, nil)
	e2etest.WantStatus(t, r, http.StatusOK, "checkpoint")
	cp, err := audit.OpenCheckpoint(r.Body, note.VerifierList(vkey))
	if err != nil {
		t.Fatalf("the served checkpoint does not open with the served key: %v\n%s", err, r.Body)
	}
	return r.Body, cp
}

// checkConsistent asserts that a consistency proof from old to cur, from
// the proof route, verifies.
func checkConsistent(t *testing.T, c *e2etest.Child, admin string, old, cur audit.Checkpoint) {
	t.Helper()
	if cur.Size < old.Size {
		t.Errorf("the log shrank: a checkpoint of %d records, now %d", old.Size, cur.Size)
		return
	}
	if cur.Size == old.Size {
		if cur.Root != old.Root {
			t.Errorf("two roots for %d records", cur.Size)
		}
		return
	}
	r := e2etest.HTTPCall(t, c.GWURL, "GET", fmt.Sprintf("/api/v1/audit/proof?from=%d&size=%d", old.Size, cur.Size), admin, nil)
	e2etest.WantStatus(t, r, http.StatusOK, "consistency proof")
	var pr audit.Proof
	r.JSON(t, &pr)
	if pr.Root != cur.Root {
		t.Errorf("the proof is against root %x, not the checkpoint's %x", pr.Root, cur.Root)
	}
	if err := merkle.VerifyConsistency(old.Size, cur.Size, old.Root, cur.Root, pr.Hashes); err != nil {
		t.Errorf("the checkpoint of %d records saved before a crash is not consistent with the log of %d after it: %v", old.Size, cur.Size, err)
	}
}

// waitAcked waits until the load has at least n acknowledged actions.
func waitAcked(t *testing.T, l *crashLoad, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for l.nacked() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d actions acknowledged in 20 s, want %d (errors: %v)", l.nacked(), n, l.errors())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestAuditCrashKill9KeepsAcknowledgedRecordsAndCheckpoints(t *testing.T) {
	const rounds, clients = 3, 4
	c := e2etest.NewChild(t, nil)
	getenv := func(k string) string { return c.Env[k] }
	c.Start()
	admin := c.Login(t, "admin", c.AdminPW)
	r := e2etest.HTTPCall(t, c.GWURL, "GET", "/api/v1/audit/key", admin, nil)
	e2etest.WantStatus(t, r, http.StatusOK, "audit key")
	vkey, err := note.NewVerifier(strings.TrimSpace(string(r.Body)))
	if err != nil {
		t.Fatalf("the served key %q: %v", r.Body, err)
	}
	l := &crashLoad{tried: map[crashAction]bool{}, last: map[int]crashAction{}}
	var saved []audit.Checkpoint
	for round := range rounds {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}, Timeout: 30 * time.Second}
		var wg sync.WaitGroup
		for client := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				crashClient(c, hc, admin, round, client, l)
			}()
		}
		// The checkpoint is fetched under the load, and the kill comes a
		// few more acknowledgements later (a different moment each round).
		waitAcked(t, l, l.nacked()+20+rand.IntN(60))
		body, cp := fetchCheckpoint(t, c, admin, vkey)
		file := filepath.Join(t.TempDir(), fmt.Sprintf("round-%d.checkpoint", round))
		if err := os.WriteFile(file, body, 0o600); err != nil {
			t.Fatal(err)
		}
		saved = append(saved, cp)
		waitAcked(t, l, l.nacked()+10+rand.IntN(30))
		c.Kill()
		wg.Wait()
		hc.CloseIdleConnections()
		if errs := l.errors(); len(errs) > 0 {
			t.Fatalf("unexpected answers under load: %v", errs)
		}

		// No server: the log verifies and contains the saved checkpoint.
		out, errOut, code := auditRun(t, getenv, "audit", "verify", "--checkpoint", file)
		if code != 0 {
			t.Fatalf("round %d: audit verify --checkpoint: exit %d\n%s%s", round, code, out, errOut)
		}
		if want := fmt.Sprintf("contains the checkpoint of %d records", cp.Size); !strings.Contains(out, want) {
			t.Errorf("round %d: audit verify does not say it %s:\n%s", round, want, out)
		}

		c.Start()
		admin = c.Login(t, "admin", c.AdminPW)
		unacked := checkRecords(t, c, admin, l)
		_, cur := fetchCheckpoint(t, c, admin, vkey)
		for _, old := range saved {
			checkConsistent(t, c, admin, old, cur)
		}
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("round %d: %d actions acknowledged so far (%d tried with a known key, %d of them stored unacknowledged); checkpoint of %d records saved, %d records after the restart",
			round, len(l.acked), len(l.tried), unacked, cp.Size, cur.Size)
	}
}
