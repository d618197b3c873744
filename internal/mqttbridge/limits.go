package mqttbridge

import (
	"math"
	"net/netip"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Connection limits (SPEC: RATE_LIMIT_IP_PER_MINUTE, MAX_CONNECTIONS_PER_USER).
//
// CONNECT rate per client IP: a token bucket per source address holding
// Config.RateLimitIPPerMinute tokens and refilling at that rate; every
// CONNECT packet takes one, before its credentials are looked at (so it
// also slows password guessing). MQTT is plain TCP here, so the address is
// the socket's peer. Refused: CONNACK 0x9F "connection rate exceeded" (v5),
// 0x03 "server unavailable" (3.1.1, which has no better code), then close.
//
// Connections per principal: at most Config.MaxConnsPerUser live MQTT
// connections per user or device, counted when the credentials are
// accepted. A CONNECT that takes over the principal's session with the same
// client id does not count the connection it replaces. Refused: CONNACK
// 0x97 "quota exceeded" (v5), 0x03 "server unavailable" (3.1.1). The count
// is per transport: WebSocket connections have their own count of the same
// size in the gateway (sharing one count would need a reservation API in
// the presence registry, which only sees established connections).

// ipRateLimiter bounds CONNECTs per client IP per minute. It forgets
// addresses whose bucket has refilled, so its memory is bounded by the
// addresses active within a minute. Safe for concurrent use.
type ipRateLimiter struct {
	perMinute int
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*tokenBucket
	lastSweep time.Time
}

// tokenBucket holds tokens refilled at rate per second up to burst.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newIPRateLimiter(perMinute int, now func() time.Time) *ipRateLimiter {
	return &ipRateLimiter{perMinute: perMinute, now: now, buckets: make(map[netip.Addr]*tokenBucket)}
}

// allow takes one CONNECT for ip; perMinute ≤ 0 allows everything.
func (l *ipRateLimiter) allow(ip netip.Addr) bool {
	if l == nil || l.perMinute <= 0 {
		return true
	}
	now := l.now()
	rate := float64(l.perMinute) / 60
	burst := float64(l.perMinute)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		for a, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*rate >= burst {
				delete(l.buckets, a)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[ip]
	if b == nil {
		b = &tokenBucket{tokens: burst, last: now}
		l.buckets[ip] = b
	} else if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(burst, b.tokens+el*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// remoteIP is the address of a client's peer ("" or unparsable: the zero
// Addr, which shares one bucket).
func remoteIP(cl *mqtt.Client) netip.Addr {
	if ap, err := netip.ParseAddrPort(cl.Net.Remote); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(cl.Net.Remote)
	return a.Unmap()
}

// reserveSession registers ss for cl unless its principal already has
// MaxConnsPerUser live connections (not counting a closed one, nor one with
// the same client id, which this connection takes over). It reports
// whether it did.
func (s *Server) reserveSession(cl *mqtt.Client, ss *session) bool {
	p := ss.who.Principal
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	mine := s.byPrincipal[p]
	if limit := s.cfg.MaxConnsPerUser; limit > 0 && len(mine) >= limit {
		n := 0
		for other := range mine {
			if other.ID != cl.ID && !other.Closed() {
				n++
			}
		}
		if n >= limit {
			return false
		}
	}
	if mine == nil {
		mine = make(map[*mqtt.Client]struct{})
		s.byPrincipal[p] = mine
	}
	mine[cl] = struct{}{}
	s.sessions[cl] = ss
	return true
}

// dropSessionLocked forgets cl's session; sessMu is held.
func (s *Server) dropSessionLocked(cl *mqtt.Client, ss *session) {
	delete(s.sessions, cl)
	p := ss.who.Principal
	if mine := s.byPrincipal[p]; mine != nil {
		delete(mine, cl)
		if len(mine) == 0 {
			delete(s.byPrincipal, p)
		}
	}
}

// refuseLimited answers a CONNECT refused by a limit: v5 gets code, 3.1.1
// gets 0x03 (server unavailable); then the connection is closed.
func (s *Server) refuseLimited(cl *mqtt.Client, v5 bool, code packets.Code) {
	if v5 {
		_ = s.mq.SendConnack(cl, code, false, nil)
		cl.Stop(code)
		return
	}
	_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: 0x03})
	cl.Stop(code)
}
