package main

import (
	"fmt"
	"github.com/unhidra/unhidra/internal/redact"
	"io"
	"log/slog"
	"strings"
)

// secretKeys are attribute names whose values are replaced before any log
// line is written: a second line of defence behind never passing secrets to
// the logger at all.
var secretKeys = []string{"password", "token", "secret", "api_key", "apikey", "authorization", "key"}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range secretKeys {
		if k == s || strings.HasSuffix(k, "_"+s) || strings.HasSuffix(k, "."+s) {
			return true
		}
	}
	return false
}

// scrubAttr replaces credential-shaped substrings of a string, error or
// Stringer value (redact.Scrub): whatever a caller passes by mistake, a key
// or token never reaches the log.
func scrubAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); redact.LooksSecret(s) {
			return slog.String(a.Key, redact.Scrub(s))
		}
	case slog.KindAny:
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case fmt.Stringer:
			s = x.String()
		default:
			return a
		}
		if redact.LooksSecret(s) {
			return slog.String(a.Key, redact.Scrub(s))
		}
	}
	return a
}

// newLogger returns the process logger: text (development) or JSON
// (production) on w, at level. Only main builds loggers; everything else
// receives one.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{
		Level: lv,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if isSecretKey(a.Key) {
				return slog.String(a.Key, "[redacted]")
			}
			return scrubAttr(a)
		},
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
