package httpapi

// Middleware shared by the auth API and the REST API: request metrics, a
// per-client-IP request limit, panic recovery, refusal of credentials in
// URLs, and access logs that never contain a query string (with the
// request id of httpx.WithSource, which wraps both servers outside them).

import (
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/ratelimit"

	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/redact"
	"github.com/unhidra/unhidra/wire"
)

// HTTPMetrics counts requests by server, route pattern and status, and times
// them. Route labels are the mux patterns (bounded), never raw paths.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTPMetrics registers the collectors on reg, or reuses them when
// another server already registered them there. reg may be nil.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unhidra_http_requests_total",
			Help: "HTTP requests by server, route pattern and status code.",
		}, []string{"server", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "unhidra_http_request_duration_seconds",
			Help:    "HTTP request duration by server and route pattern.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"server", "route"}),
	}
	if reg != nil {
		m.requests = registerOrExisting(reg, m.requests)
		m.duration = registerOrExisting(reg, m.duration)
	}
	return m
}

func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// statusWriter records the status code; it keeps Flush and Hijack working
// for streaming and WebSocket upgrades.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		if w.status == 0 {
			w.status = http.StatusSwitchingProtocols
		}
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Instrument wraps next with request metrics for server and a debug access
// log (method, route pattern, status, duration; never the query string).
func (m *HTTPMetrics) Instrument(server string, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		el := time.Since(start)
		m.requests.WithLabelValues(server, route, strconv.Itoa(sw.status)).Inc()
		m.duration.WithLabelValues(server, route).Observe(el.Seconds())
		if log != nil {
			log.Debug("http request", "server", server, "method", r.Method, "route", route, "status", sw.status, "duration", el, "request_id", audit.SourceOf(r.Context()).RequestID)
		}
	})
}

// Limiter is the limiter every transport shares.
type Limiter = ratelimit.Limiter

// LimitByIP answers 429 with Retry-After when the client IP (X-Forwarded-For
// only from trusted proxies) exceeds l. Requests for which exempt returns
// true (health checks, metrics) are not counted.
func LimitByIP(l Limiter, trusted []netip.Prefix, exempt func(*http.Request) bool, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt == nil || !exempt(r) {
			if ok, wait := l.Allow(ClientIP(r, trusted).String()); !ok {
				secs := max(1, int((wait+time.Second-1)/time.Second))
				WriteError(w, r, log, &unhidra.Error{Code: unhidra.ERATELIMITED, Message: "too many requests, slow down", RetryAfter: secs})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Recover turns a handler panic into a 500 and a log line instead of a
// dropped connection.
func Recover(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				if log != nil {
					log.Error("handler panic", "method", r.Method, "route", r.Pattern, "request_id", audit.SourceOf(r.Context()).RequestID, "panic", redact.Scrub(fmt.Sprint(v)))
				}
				WriteError(w, r, nil, unhidra.Errorf(unhidra.EINTERNAL, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// credentialParams are query parameter names that carry credentials.
var credentialParams = []string{"api_key", "apikey", "key", "token", "access_token", "refresh_token", "password", "auth"}

// hasURLCredential reports whether the query string carries a credential:
// a parameter named like one, or any name or value shaped like a device key
// or refresh token (also when percent-encoded).
func hasURLCredential(rawQuery string) bool {
	if rawQuery == "" {
		return false
	}
	suspicious := func(s string) bool {
		return strings.Contains(s, wire.DeviceKeyPrefix) || strings.Contains(s, wire.RefreshTokenPrefix)
	}
	if suspicious(rawQuery) {
		return true
	}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		// Undecodable queries are judged on their raw parameter names.
		vals = url.Values{}
		for _, part := range strings.Split(rawQuery, "&") {
			name, _, _ := strings.Cut(part, "=")
			vals.Add(name, "")
		}
	}
	for name, vs := range vals {
		if suspicious(name) || slices.Contains(credentialParams, strings.ToLower(name)) {
			return true
		}
		for _, v := range vs {
			if suspicious(v) {
				return true
			}
		}
	}
	return false
}

// RefuseURLCredentials answers 400 to any request carrying a credential in
// its URL: keys and tokens in URLs end up in proxy and browser logs. The
// credential is never logged or echoed.
func RefuseURLCredentials(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hasURLCredential(r.URL.RawQuery) {
			WriteError(w, r, log, unhidra.Errorf(unhidra.EINVALID, "credentials must be sent in the Authorization header, never in the URL"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
