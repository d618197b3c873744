package mqttbridge

import (
	"net/netip"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/unhidra/unhidra/internal/ratelimit"
)

// Connection limits (docs/protocol.md#limits: RATE_LIMIT_IP_PER_MINUTE, MAX_CONNECTIONS_PER_USER).
//
// CONNECT rate per client IP: an exact sliding minute per source address
// (ratelimit.WindowLimiter): at most Config.RateLimitIPPerMinute CONNECT
// packets in any 60 s, counted before the credentials are looked at (so it
// also slows password guessing); the next one is allowed when the oldest of
// them is a minute old. MQTT is plain TCP here, so the address is the
// socket's peer. Refused: CONNACK 0x9F "connection rate exceeded" (v5),
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

// newIPLimiter returns the CONNECT limiter per client IP: injected when
// set, else an exact sliding minute of perMinute; nil for no limit.
func newIPLimiter(injected ratelimit.Limiter, perMinute int, now func() time.Time) ratelimit.Limiter {
	if injected != nil {
		return injected
	}
	if perMinute <= 0 {
		return nil
	}
	return ratelimit.NewWindowLimiter(perMinute, time.Minute, now)
}

// allowConnect counts one CONNECT from cl's address.
func (s *Server) allowConnect(cl *mqtt.Client) bool {
	if s.ipLimit == nil {
		return true
	}
	ok, _ := s.ipLimit.Allow(remoteIP(cl).String())
	return ok
}

// remoteIP is the address of a client's peer ("" or unparsable: the zero
// Addr, which shares one window).
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
