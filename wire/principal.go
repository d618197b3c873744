// Package wire defines Unhidra's public wire types: WebSocket frames, the
// Message shape shared by every transport, and a strict decoder for client
// frames. It has no dependencies beyond the standard library so that device
// and bot authors can import it alone.
package wire

// Principal kinds.
const (
	KindUser   = "user"
	KindDevice = "device"
)

// Principal identifies who is acting: a user (by username) or a device (by
// device id).
type Principal struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// IsDevice reports whether p is a device.
func (p Principal) IsDevice() bool { return p.Kind == KindDevice }

// String renders p as "kind:id", for logs.
func (p Principal) String() string { return p.Kind + ":" + p.ID }
