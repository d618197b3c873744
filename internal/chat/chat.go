// Package chat is Unhidra's chat domain: channels of four kinds (public,
// private, direct, device), membership and roles, messages with gapless
// per-channel offsets, idempotent publishing, edits and tombstones, threads,
// history pages, recovery on subscribe, full-text search and typing.
//
// Every transport (REST, WebSocket, MQTT) calls the same Service methods, so
// the rules below hold on all of them:
//
// Reading (subscribe, history, threads, channel and member listing):
//   - public channels: any user; private and direct channels: members;
//   - device channels (id "device:<device_id>"): their members (the owner),
//     every admin, and the device itself;
//   - devices read only their own device channel.
//
// Posting (publish, typing): members only. A user must join a public channel
// before posting in it (as in Mattermost). A device may post only in its own
// device channel; admins may post in any device channel.
//
// Not being allowed and the channel not existing give the same answer,
// forbidden, everywhere: nobody learns whether a private channel exists.
//
// Bodies: exactly one of text, data and e2ee. An e2ee channel — and, with
// E2EE_ENFORCED, every channel that is not a device channel — accepts only
// e2ee bodies; every other channel refuses e2ee bodies (the server could not
// search or moderate them and clients of that channel hold no keys). e2ee
// envelopes are stored and relayed byte-exact and never indexed.
//
// Recovery window: the full history stays in the store, but a subscribe with
// `since` replays at most Options.RecoveryWindow (default 1,000) missed
// messages. Beyond that the answer is recovered:false with no messages (never
// a partial batch) and the client pages through REST history.
//
// Losing the right to read a channel (removal from or leaving a channel
// that is not public, and channel deletion) is published on the channel's
// topic as member_removed or channel_deleted, so transports end the live
// subscriptions it affects.
//
// Concurrency contract: a Service is safe for concurrent use. Message
// appends from all goroutines go through one group-commit loop (see
// commit.go) which assigns offsets, commits many appends in one transaction
// and then publishes their `message` frames on the broker in offset order per
// channel; the loop runs only while appends are pending, so an idle Service
// owns no goroutines.
package chat

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// Channel kinds.
const (
	KindPublic  = "public"
	KindPrivate = "private"
	KindDirect  = "direct"
	KindDevice  = "device"
)

// Member roles.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// DeviceChannelPrefix starts the id of every device channel.
const DeviceChannelPrefix = wire.DeviceChannelPrefix

// Limits on channel metadata and listings.
const (
	MaxNameRunes      = 80
	MaxTopicRunes     = 250
	MaxCreateMembers  = 100
	MaxUserIDLen      = 64
	MaxPageLimit      = 200
	DefaultPageLimit  = 50
	MaxSearchLimit    = 100
	DefaultSearchLim  = 20
	MaxListedChannels = 1000
	// MaxListedBlocks bounds GET /api/v1/blocks and the blocks one user
	// may hold.
	MaxListedBlocks = 1000
)

// Channel-creation quota (users; admins are exempt). Reopening an existing
// direct channel creates nothing and counts nothing; device channels are
// made with their device and never count.
const (
	// MaxChannelsPerDay bounds the channels (public, private and direct)
	// one user creates in any rolling QuotaWindow; the next create is
	// refused rate_limited with Retry-After until the oldest of them ages
	// out of the window.
	MaxChannelsPerDay = 100
	// MaxCreatedChannels bounds the public and private channels one user
	// has created that still exist; beyond it creates are refused
	// rate_limited until the user deletes one.
	MaxCreatedChannels = 500
	// QuotaWindow is the window of MaxChannelsPerDay.
	QuotaWindow = 24 * time.Hour
)

// Channel is a place where messages are posted.
type Channel struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	E2EE      bool      `json:"e2ee"`
	Topic     string    `json:"topic"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// LastOffset is the offset of the newest message (0 when empty).
	LastOffset int64 `json:"last_offset"`
	// DirectKey names the pair of a direct channel ("a\nb", sorted user
	// ids); empty for other kinds. Not shown to clients.
	DirectKey string `json:"-"`
}

// Member is a user's membership of a channel.
type Member struct {
	User     string    `json:"user"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
	// AcceptedAt is when the member accepted the channel: joined it
	// themselves, created or opened it, posted in it or accepted it. A
	// member added by someone else is pending (nil) until then and shares
	// no presence through the channel (see the package comment).
	AcceptedAt *time.Time `json:"accepted_at,omitempty"`
}

// Accepted reports whether the member accepted the channel.
func (m Member) Accepted() bool { return m.AcceptedAt != nil }

// Block is one user blocking another (GET /api/v1/blocks).
type Block struct {
	User      string    `json:"user"` // the blocked user
	CreatedAt time.Time `json:"created_at"`
}

// directPeer returns the other user of a direct channel's pair, or "".
func directPeer(ch Channel, me string) string {
	a, b, ok := strings.Cut(ch.DirectKey, "\n")
	switch {
	case !ok:
		return ""
	case a == me:
		return b
	case b == me:
		return a
	}
	return ""
}

func directKeyOf(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "\n" + b
}

// DeviceChannelID returns the id of the channel of device deviceID.
func DeviceChannelID(deviceID string) string { return wire.DeviceChannel(deviceID) }

// deviceOf returns the device id of a device channel id, or "".
func deviceOf(channelID string) string {
	d, _ := wire.DeviceOfChannel(channelID)
	return d
}

// ValidKind reports whether k is a channel kind.
func ValidKind(k string) bool {
	switch k {
	case KindPublic, KindPrivate, KindDirect, KindDevice:
		return true
	}
	return false
}

// ValidRole reports whether r is a member role.
func ValidRole(r string) bool {
	switch r {
	case RoleOwner, RoleAdmin, RoleMember:
		return true
	}
	return false
}

// roleRank orders roles: owner > admin > member.
func roleRank(r string) int {
	switch r {
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	}
	return 0
}

// ValidateName checks a channel name: 1..MaxNameRunes runes of valid UTF-8
// without control characters, not blank. It returns the trimmed name.
func ValidateName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", unhidra.Errorf(unhidra.EINVALID, "name is required")
	}
	if err := checkLine("name", name, MaxNameRunes); err != nil {
		return "", err
	}
	return name, nil
}

// ValidateTopic checks a channel topic: at most MaxTopicRunes runes without
// control characters.
func ValidateTopic(topic string) (string, error) {
	topic = strings.TrimSpace(topic)
	if err := checkLine("topic", topic, MaxTopicRunes); err != nil {
		return "", err
	}
	return topic, nil
}

func checkLine(field, s string, maxRunes int) error {
	if !utf8.ValidString(s) {
		return unhidra.Errorf(unhidra.EINVALID, "%s is not valid UTF-8", field)
	}
	if utf8.RuneCountInString(s) > maxRunes {
		return unhidra.Errorf(unhidra.EINVALID, "%s is longer than %d characters", field, maxRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return unhidra.Errorf(unhidra.EINVALID, "%s contains control characters", field)
		}
	}
	return nil
}

// ValidateUserID checks the shape of a user id (username) named in a
// request: 1..MaxUserIDLen bytes of [a-z0-9._-] (docs/protocol.md#identifiers usernames, which
// are stored lower-case). It returns the lower-cased id.
func ValidateUserID(u string) (string, error) {
	u = strings.ToLower(strings.TrimSpace(u))
	if u == "" || len(u) > MaxUserIDLen {
		return "", unhidra.Errorf(unhidra.EINVALID, "user must be 1 to %d characters", MaxUserIDLen)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "", unhidra.Errorf(unhidra.EINVALID, "user may contain only a-z, 0-9, '.', '_' and '-'")
		}
	}
	return u, nil
}

// ValidateChannelID checks the shape of a channel id from a request: the
// rule of every transport (wire.ValidChannelID).
func ValidateChannelID(id string) error {
	if id == "" {
		return unhidra.Errorf(unhidra.EINVALID, "channel is required")
	}
	if !wire.ValidChannelID(id) {
		return unhidra.Errorf(unhidra.EINVALID, "channel is not a valid channel id")
	}
	return nil
}

// Body is the content of a message: exactly one field set.
type Body struct {
	Text *string
	Data []byte
	E2EE []byte
}

// bodyOf extracts and validates the body of a publish or an edit. It checks
// that exactly one of text, data and e2ee is set, their sizes (wire limits),
// UTF-8, that data is JSON and e2ee a JSON object, both nested at most
// wire.MaxDepth levels.
func bodyOf(text *string, data, e2ee []byte) (Body, error) {
	if isJSONNull(data) {
		data = nil
	}
	if isJSONNull(e2ee) {
		e2ee = nil
	}
	n := 0
	if text != nil {
		n++
	}
	if len(data) > 0 {
		n++
	}
	if len(e2ee) > 0 {
		n++
	}
	if n != 1 {
		return Body{}, unhidra.Errorf(unhidra.EINVALID, "exactly one of text, data and e2ee is required")
	}
	switch {
	case text != nil:
		t := *text
		if len(t) > wire.MaxTextBytes {
			return Body{}, unhidra.Errorf(unhidra.ETOOLARGE, "text is larger than %d bytes", wire.MaxTextBytes)
		}
		if !utf8.ValidString(t) {
			return Body{}, unhidra.Errorf(unhidra.EINVALID, "text is not valid UTF-8")
		}
		if strings.TrimSpace(t) == "" {
			return Body{}, unhidra.Errorf(unhidra.EINVALID, "text is empty")
		}
		if strings.IndexByte(t, 0) >= 0 {
			return Body{}, unhidra.Errorf(unhidra.EINVALID, "text contains a NUL character")
		}
		return Body{Text: &t}, nil
	case len(data) > 0:
		if len(data) > wire.MaxDataBytes {
			return Body{}, unhidra.Errorf(unhidra.ETOOLARGE, "data is larger than %d bytes", wire.MaxDataBytes)
		}
		if err := checkJSONValue("data", data); err != nil {
			return Body{}, err
		}
		return Body{Data: append([]byte(nil), data...)}, nil
	default:
		if len(e2ee) > wire.MaxDataBytes {
			return Body{}, unhidra.Errorf(unhidra.ETOOLARGE, "e2ee is larger than %d bytes", wire.MaxDataBytes)
		}
		if err := checkJSONValue("e2ee", e2ee); err != nil {
			return Body{}, err
		}
		if !isJSONObject(e2ee) {
			return Body{}, unhidra.Errorf(unhidra.EINVALID, "e2ee must be a JSON object")
		}
		return Body{E2EE: append([]byte(nil), e2ee...)}, nil
	}
}

// checkJSONValue refuses a data or e2ee value that is not one JSON value of
// valid UTF-8 (no lone surrogate escapes) nested at most wire.MaxDepth
// levels. It is the one such check for messages from every transport (and
// device telemetry, which is a data message), so history never holds a value
// common clients cannot read back.
func checkJSONValue(field string, b []byte) error {
	if err := wire.CheckJSON(b); err != nil {
		return unhidra.Wrap(unhidra.EINVALID, field+": "+err.Error(), err)
	}
	return nil
}

// ValidateClientMsgID checks an optional client_msg_id: at most
// wire.MaxClientMsgIDLen bytes of printable UTF-8.
func ValidateClientMsgID(id string) error {
	if id == "" {
		return nil
	}
	if len(id) > wire.MaxClientMsgIDLen || !utf8.ValidString(id) {
		return unhidra.Errorf(unhidra.EINVALID, "client_msg_id must be at most %d bytes of UTF-8", wire.MaxClientMsgIDLen)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return unhidra.Errorf(unhidra.EINVALID, "client_msg_id contains control characters")
		}
	}
	return nil
}

// change is a committed change worth an audit record: channel creation and
// deletion and every membership change (audit.ActionChannel*, ActionMember*).
type change struct {
	Action  string
	Actor   unhidra.Identity
	Channel string
	// Target is the user whose membership changed (member events).
	Target string
	Role   string
}
