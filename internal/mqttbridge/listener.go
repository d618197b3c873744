package mqttbridge

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is a TCP (optionally TLS) listener for mochi that gives every
// new connection a deadline for its CONNECT (mochi sets none before the
// CONNECT is read, so a silent or half-sent connection would otherwise stay
// open forever), logs failed connections at debug level only (malformed
// packets are expected from the internet), and exposes the bound address
// (port 0 in tests).
type listener struct {
	id             string
	addr           string
	tlsConfig      *tls.Config
	connectTimeout time.Duration
	// pre, when set, is a listener the caller opened; Init uses it.
	pre net.Listener
	// drain, when set, disconnects the listener's clients at Close instead
	// of the broker's own CloseFn, whose Clients.GetByListener takes the
	// clients' read lock twice and deadlocks against a client leaving at
	// that moment (a writer waiting between the two).
	drain func(listenerID string)

	mu    sync.Mutex
	ln    net.Listener
	log   *slog.Logger
	done  bool
	conns map[net.Conn]struct{}
	// wg counts connection goroutines; Close waits for them so that mochi's
	// ClientsWg.Wait never runs concurrently with a ClientsWg.Add.
	wg sync.WaitGroup
}

var _ listeners.Listener = (*listener)(nil)

func (l *listener) ID() string { return l.id }

func (l *listener) Protocol() string {
	if l.tlsConfig != nil {
		return "tls"
	}
	return "tcp"
}

func (l *listener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *listener) Init(log *slog.Logger) error {
	ln := l.pre
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", l.addr); err != nil {
			return err
		}
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.mu.Lock()
	l.ln = ln
	l.log = log
	l.mu.Unlock()
	return nil
}

func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		l.mu.Lock()
		if l.done {
			l.mu.Unlock()
			conn.Close()
			return
		}
		l.wg.Add(1)
		if l.conns == nil {
			l.conns = make(map[net.Conn]struct{})
		}
		l.conns[conn] = struct{}{}
		l.mu.Unlock()
		_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
		go func() {
			defer l.wg.Done()
			defer func() {
				l.mu.Lock()
				delete(l.conns, conn)
				l.mu.Unlock()
			}()
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("mqtt connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	already := l.done
	l.done = true
	ln := l.ln
	l.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	if already {
		return
	}
	if l.drain != nil {
		l.drain(l.id)
	} else {
		closeClients(l.id)
	}
	// Connections that never completed a CONNECT are not mochi clients yet.
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
