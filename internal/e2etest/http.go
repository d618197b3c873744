package e2etest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra/internal/openapitest"
	"github.com/unhidra/unhidra/wire"
)

// Reply is an HTTP answer, read whole.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the answer's body into v, failing the test when it is not
// JSON.
func (r Reply) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// HTTPCall is one JSON request to base+path: body (nil: none) is sent as
// JSON, bearer (empty: none) as the access token. It is the one place the
// suites' JSON requests and their answers pass through, and each exchange
// is checked against the OpenAPI document (internal/openapitest).
func HTTPCall(t testing.TB, base, method, path, bearer string, body any) Reply {
	t.Helper()
	return HTTPCallWith(t, base, method, path, bearer, body, nil)
}

// HTTPCallWith is HTTPCall with more request headers (X-Forwarded-For,
// X-Request-ID, …).
func HTTPCallWith(t testing.TB, base, method, path, bearer string, body any, header http.Header) Reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	// Every answer of the end-to-end suites is checked against the OpenAPI
	// document the server serves.
	openapitest.CheckCall(t, method, path, bearer, body, res.StatusCode, res.Header, b)
	return Reply{Status: res.StatusCode, Header: res.Header, Body: b}
}

// Decode decodes a JSON answer.
func Decode(t testing.TB, r Reply, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// WantStatus fails the test unless the answer has the status.
func WantStatus(t testing.TB, r Reply, status int, what string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: got %d %s, want %d", what, r.Status, r.Body, status)
	}
}

// WaitHTTP polls url until it answers 200 and returns how long that took.
func WaitHTTP(t testing.TB, url string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c := &http.Client{Timeout: time.Second}
	for {
		res, err := c.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return time.Since(start)
			}
		}
		if time.Since(start) > within {
			t.Fatalf("%s not ready within %s (last: %v)", url, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// History returns the whole history of a channel, oldest first, paging
// back from the newest with before= (the API's default order).
func History(t testing.TB, base, channel, bearer string) []wire.Message {
	t.Helper()
	var all []wire.Message
	q := ""
	for {
		r := HTTPCall(t, base, "GET", "/api/v1/channels/"+channel+"/messages?limit=200"+q, bearer, nil)
		if r.Status != 200 {
			t.Fatalf("history of %s: %d %s", channel, r.Status, r.Body)
		}
		var p struct {
			Messages []wire.Message `json:"messages"`
			HasMore  bool           `json:"has_more"`
		}
		Decode(t, r, &p)
		for i := 1; i < len(p.Messages); i++ {
			if p.Messages[i].Offset >= p.Messages[i-1].Offset {
				t.Fatalf("history page not newest first: offset %d after %d", p.Messages[i].Offset, p.Messages[i-1].Offset)
			}
		}
		all = append(all, p.Messages...)
		if !p.HasMore || len(p.Messages) == 0 {
			break
		}
		q = fmt.Sprintf("&before=%d", p.Messages[len(p.Messages)-1].Offset)
	}
	slices.Reverse(all)
	return all
}

// Scrape reads a Prometheus text page into "name{labels}" → value.
func Scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("metrics: %d %s", res.StatusCode, b)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// Metric returns one sample of a scraped page, failing when it is absent.
func Metric(t testing.TB, m map[string]float64, key string) float64 {
	t.Helper()
	v, ok := m[key]
	if !ok {
		t.Fatalf("metric %s missing", key)
	}
	return v
}
