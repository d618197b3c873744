package wstest

import (
	"bufio"
	"bytes"
	"net"
	"testing"
)

// frameConn reads back frames that AppendFrame produced, unmasking them.
func TestAppendFrameRoundTripsThroughReadFrame(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
	}{
		{"a short masked text frame", Frame{Fin: true, Op: OpText, Payload: []byte("hello")}},
		{"a 16-bit length", Frame{Fin: true, Op: OpBinary, Payload: bytes.Repeat([]byte{7}, 300)}},
		{"a 64-bit length", Frame{Fin: false, Op: OpText, Payload: bytes.Repeat([]byte{'a'}, 70000)}},
		{"RSV bits and an odd opcode", Frame{Fin: true, RSV: 5, Op: 0xB, Payload: []byte{1}}},
		{"an unmasked frame", Frame{Fin: true, Op: OpPing, Payload: []byte("p"), Unmasked: true}},
		{"an empty close", Frame{Fin: true, Op: OpClose}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendFrame(nil, tt.f)
			a, p := net.Pipe()
			defer a.Close()
			defer p.Close()
			go func() { a.Write(b) }()
			c := &Conn{nc: p, br: bufio.NewReader(p)}
			got, err := c.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if got.Fin != tt.f.Fin || got.RSV != tt.f.RSV || got.Op != tt.f.Op || got.Masked == tt.f.Unmasked || !bytes.Equal(got.Payload, tt.f.Payload) {
				t.Errorf("got fin %v rsv %d op %#x masked %v len %d", got.Fin, got.RSV, got.Op, got.Masked, len(got.Payload))
			}
		})
	}
}

func TestAppendFrameWritesALyingLength(t *testing.T) {
	b := AppendFrame(nil, Frame{Fin: true, Op: OpText, Payload: []byte("ab"), Length: 126, Unmasked: true})
	if b[1] != 126 || b[2] != 0 || b[3] != 126 || len(b) != 6 {
		t.Fatalf("header % x", b[:4])
	}
}

func TestCloseErrorCarriesCodeAndReason(t *testing.T) {
	ce := closeError([]byte{0x0F, 0xA8, 's', 'l', 'o', 'w'})
	if ce.Code != 4008 || ce.Reason != "slow" {
		t.Fatalf("got %+v", ce)
	}
	if ce := closeError(nil); ce.Code != 1005 {
		t.Fatalf("empty close: %+v", ce)
	}
}
