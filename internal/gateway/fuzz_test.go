package gateway

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/inmem"
	"github.com/unhidra/unhidra/internal/wstest"
	"github.com/unhidra/unhidra/wire"
)

func FuzzReadHeader(f *testing.F) {
	for _, fr := range []wstest.Frame{
		{Fin: true, Op: wstest.OpText, Payload: []byte(`{"type":"typing"}`)},
		{Fin: true, Op: wstest.OpPing, Payload: make([]byte, 125)},
		{Fin: false, Op: wstest.OpText, Payload: make([]byte, 300)},
		{Fin: true, Op: wstest.OpBinary, Payload: make([]byte, 70000)},
		{Fin: true, Op: wstest.OpClose, Payload: []byte{3, 232}},
		{Fin: true, Op: wstest.OpText, Unmasked: true},
		{Fin: true, RSV: 7, Op: 0xF, Length: 1 << 63},
	} {
		f.Add(wstest.AppendFrame(nil, fr))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf [14]byte
		h, err := readHeader(bytes.NewReader(b), buf[:])
		if err != nil {
			return
		}
		if !h.masked || h.rsv != 0 || h.length < 0 {
			t.Fatalf("accepted header %+v", h)
		}
		switch h.op {
		case opContinuation, opText, opBinary:
		case opClose, opPing, opPong:
			if !h.fin || h.length > maxControlPayload {
				t.Fatalf("accepted control header %+v", h)
			}
		default:
			t.Fatalf("accepted opcode %#x", h.op)
		}
	})
}

func TestReadHeaderRoundTripsClientFrames(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 100000} {
		b := wstest.AppendFrame(nil, wstest.Frame{Fin: true, Op: wstest.OpText, Payload: bytes.Repeat([]byte{'a'}, n)})
		var buf [14]byte
		r := bytes.NewReader(b)
		h, err := readHeader(r, buf[:])
		if err != nil || h.length != int64(n) || !h.fin || h.op != opText {
			t.Fatalf("n=%d: header %+v, err %v", n, h, err)
		}
		p, _ := io.ReadAll(r)
		maskBytes(h.mask, 0, p)
		if !bytes.Equal(p, bytes.Repeat([]byte{'a'}, n)) {
			t.Fatalf("n=%d: payload did not unmask", n)
		}
	}
}

func FuzzParseCredential(f *testing.F) {
	f.Add("unhidra.v1, bearer.eyJabc.def.ghi", "")
	f.Add("unhidra.v1, apikey.unhidra_dk_abc", "")
	f.Add("bearer, eyJabc", "")
	f.Add("bearer, unhidra_dk_x", "")
	f.Add("", "token=eyJ")
	f.Add("", "token=unhidra_dk_x")
	f.Add("unhidra.v1", "token=a&token=b")
	f.Add("bearer", "token=%zz")
	f.Add("unhidra.v1, bearer.", "")
	f.Fuzz(func(t *testing.T, header, query string) {
		c, ok := parseCredential([]string{header}, query)
		if !ok {
			return
		}
		entries, _ := splitProtocols([]string{header})
		if c.protocol != "" {
			offered := false
			for _, e := range entries {
				if e == c.protocol {
					offered = true
				}
			}
			if !offered {
				t.Fatalf("answers subprotocol %q the client did not offer (%q)", c.protocol, header)
			}
		}
		if c.protocol != "" && c.protocol != protoV1 && c.protocol != protoBearer {
			t.Fatalf("answers %q", c.protocol)
		}
		if c.kind == credNone && c.secret != "" {
			t.Fatalf("secret without a kind")
		}
		if c.kind != credNone && c.secret == "" {
			t.Fatalf("empty secret accepted from %q %q", header, query)
		}
		if c.fromQuery && strings.HasPrefix(c.secret, deviceKeyPrefix) {
			t.Fatalf("device key accepted from the URL")
		}
		if strings.HasPrefix(c.secret, deviceKeyPrefix) != (c.kind == credDeviceKey) && !(c.kind == credDeviceKey && strings.Contains(header, "apikey.")) {
			t.Fatalf("kind %v for secret %q", c.kind, c.secret)
		}
	})
}

func FuzzOriginCheck(f *testing.F) {
	f.Add("http://127.0.0.1:9000", "127.0.0.1:9000", "")
	f.Add("http://example.com", "example.com:80", "")
	f.Add("https://app.example.com.evil.test", "app.example.com", "https://app.example.com")
	f.Add("null", "x", "")
	f.Add("http://[::1]:9000", "[::1]:9000", "")
	f.Add("http://a@b", "b", "")
	f.Fuzz(func(t *testing.T, origin, host, allowed string) {
		var list []string
		if allowed != "" {
			list = strings.Split(allowed, ",")
		}
		p := originPolicy{allowed: list}
		if !p.check(nil, host) {
			t.Fatal("an absent Origin was refused")
		}
		ok := p.check([]string{origin}, host)
		if !ok {
			return
		}
		if len(list) > 0 {
			for _, a := range list {
				if a == origin {
					return
				}
			}
			t.Fatalf("%q allowed but not in %q", origin, list)
		}
		o, found := strings.CutPrefix(origin, "http://")
		if !found {
			t.Fatalf("same-origin check allowed %q without TLS", origin)
		}
		if strings.ContainsAny(o, "/@?#") {
			t.Fatalf("same-origin check allowed %q", origin)
		}
		if !(strings.EqualFold(o, host) || strings.EqualFold(o+":80", host) || strings.EqualFold(o, host+":80")) {
			t.Fatalf("origin %q allowed for host %q", origin, host)
		}
	})
}

func FuzzParseClosePayload(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 232})
	f.Add([]byte{3, 237})
	f.Add([]byte{0x0F, 0xA0, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		code, violation := parseClosePayload(p)
		if violation != 0 {
			if violation != CloseProtocolError && violation != CloseInvalidPayload {
				t.Fatalf("violation %d", violation)
			}
			return
		}
		if len(p) >= 2 && int(binary.BigEndian.Uint16(p)) != code {
			t.Fatalf("code %d from %x", code, p)
		}
		if !validCloseCode(code) {
			t.Fatalf("accepted close code %d", code)
		}
	})
}

// FuzzConnInput feeds arbitrary bytes to a live connection's reader after
// the handshake: it must never panic or hang, and always release the
// connection.
func FuzzConnInput(f *testing.F) {
	for _, fr := range [][]wstest.Frame{
		{{Fin: true, Op: wstest.OpText, Payload: []byte(`{"type":"subscribe","channel":"c","since":0}`)}},
		{{Fin: true, Op: wstest.OpText, Payload: []byte(`{"type":"publish","channel":"c","text":"x"}`)}},
		{{Fin: false, Op: wstest.OpText, Payload: []byte(`{"type":`)}, {Fin: true, Op: wstest.OpPing}, {Fin: true, Op: wstest.OpContinuation, Payload: []byte(`"typing","channel":"c"}`)}},
		{{Fin: true, Op: wstest.OpClose, Payload: []byte{3, 232, 'o', 'k'}}},
		{{Fin: true, Op: wstest.OpText, Payload: []byte("\xff")}},
	} {
		var b []byte
		for _, x := range fr {
			b = wstest.AppendFrame(b, x)
		}
		f.Add(b)
	}
	b := inmem.NewBroker()
	auth := &fakeAuth{ids: map[string]unhidra.Identity{}}
	srv, err := New(Config{CloseTimeout: 50 * time.Millisecond, WriteTimeout: time.Second}, Deps{Tokens: auth, Chat: newFakeChat(b), Broker: b})
	if err != nil {
		f.Fatal(err)
	}
	id := unhidra.Identity{Principal: wire.Principal{Kind: wire.KindUser, ID: "fuzz"}}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, peer := net.Pipe()
		c := newConn(srv, a, nil, id, netip.MustParseAddr("127.0.0.1"))
		if !srv.register(c) {
			t.Fatal("register")
		}
		srv.reserve(id.Principal)
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, peer)
			close(drained)
		}()
		c.start([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
		go func() {
			peer.SetWriteDeadline(time.Now().Add(2 * time.Second))
			peer.Write(in)
			peer.Close()
		}()
		deadline := time.Now().Add(10 * time.Second)
		for srv.Connections() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("connection not released for input %q", in)
			}
			time.Sleep(time.Millisecond)
		}
		<-drained
	})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// frameOffset returns the top-level offset of a `message` frame a client
// received, or 0. The gateway encodes wire.MessageFrame, whose offset comes
// before the message, so only the head is decoded: readers of many large
// frames stay fast under -race.
func frameOffset(payload []byte) int64 {
	if !bytes.HasPrefix(payload, []byte(`{"type":"message",`)) {
		return 0
	}
	head := payload
	if i := bytes.Index(payload, []byte(`,"message":`)); i > 0 {
		head = append(payload[:i:i], '}')
	}
	var f struct {
		Type   string `json:"type"`
		Offset int64  `json:"offset"`
	}
	if jsonUnmarshal(head, &f) != nil || f.Type != wire.TypeMessage {
		return 0
	}
	return f.Offset
}
