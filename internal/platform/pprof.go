package platform

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"time"
)

// startPprof serves Go's runtime profiles on 127.0.0.1:PPROF_PORT, never on
// BIND_ADDR: a profile shows memory contents such as message text, so it is
// for an operator on the host (or through an SSH tunnel) only. It turns on
// the mutex and block profiles, which cost a little on every contended
// lock; they stay off without PPROF_PORT.
func startPprof(port int, log *slog.Logger) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("PPROF_PORT: %w", err)
	}
	runtime.SetMutexProfileFraction(100)
	runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := ServeHTTP("pprof", ln, nil, mux, time.Second, log, func() {})
	// A CPU profile or a trace streams for its whole ?seconds=.
	s.srv.WriteTimeout = 0
	s.srv.ReadTimeout = 0
	return s, nil
}
