package chat

import (
	"bytes"
	"context"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

// Store persists channels, members and messages. Implementations live in
// internal/sqlite (and later internal/postgres) and must pass the
// conformance suite in internal/storetest. They enforce no authorization:
// the Service does. Errors use the root vocabulary: not_found for a missing
// channel or message, conflict for duplicates, unavailable when storage
// cannot be used (locked, full, I/O).
// DeferredStore is a Store whose appends can be made durable in a second
// step, so that the group commit overlaps one batch's flush to disk with
// the next batch's writes (the SQLite store: synchronous=NORMAL for the
// append, then an fsync of its WAL). The commit loop uses it when the
// store has it.
type DeferredStore interface {
	// AppendMessagesDeferred is AppendMessages, except that what it stored
	// is durable only once a Sync that began after it returned nil. It
	// may be visible to readers before that.
	AppendMessagesDeferred(ctx context.Context, batch []Append) ([]AppendResult, error)
	// Sync makes every append returned so far durable. After a failure
	// the store reports nothing durable again.
	Sync(ctx context.Context) error
}

type Store interface {
	// CreateChannel stores ch and its initial members in one transaction.
	// A duplicate id, or a second direct channel with the same DirectKey,
	// is a conflict. Unless ch is a device channel, the same transaction
	// records one creation by ch.CreatedBy at ch.CreatedAt for
	// CreationsSince (and may forget creations older than QuotaWindow).
	// Channels read back carry directKey as DirectKey.
	CreateChannel(ctx context.Context, ch Channel, directKey string, members []Member) error
	GetChannel(ctx context.Context, id string) (Channel, error)
	// ChannelAccess returns channel id and user's membership there (Role
	// "" when user is not a member, or user is ""), in one read.
	ChannelAccess(ctx context.Context, id, user string) (Channel, Member, error)
	// CreationsSince counts the channels user created after since
	// (every kind but device, deleted ones included) and returns the
	// oldest of those creation times (zero when n is 0).
	CreationsSince(ctx context.Context, user string, since time.Time) (n int, oldest time.Time, err error)
	// CreatedChannels counts the public and private channels user created
	// that still exist.
	CreatedChannels(ctx context.Context, user string) (int, error)
	// FindDirect returns the direct channel with the given DirectKey.
	FindDirect(ctx context.Context, directKey string) (Channel, error)
	// ListChannels returns the channels user is a member of plus every
	// public channel (and, when devices is true, every device channel), at
	// most limit: first those the user belongs to (and device channels),
	// then the other public channels, each part ordered by id, so that
	// public channels anyone can create never push the user's own out.
	ListChannels(ctx context.Context, user string, devices bool, limit int) ([]Channel, error)
	// UpdateChannel sets the name and topic of channel id.
	UpdateChannel(ctx context.Context, id, name, topic string) (Channel, error)
	// DeleteChannel removes the channel, its members and its messages.
	DeleteChannel(ctx context.Context, id string) error

	// GetMember returns user's membership of channel, not_found if none.
	GetMember(ctx context.Context, channel, user string) (Member, error)
	// Members lists the members of channel ordered by user.
	Members(ctx context.Context, channel string) ([]Member, error)
	// PutMember adds user (with m.AcceptedAt) or changes their role,
	// keeping their joined_at and accepted_at; it reports whether the user
	// was added (false: the role was changed).
	PutMember(ctx context.Context, channel string, m Member) (added bool, err error)
	// AcceptMember sets user's accepted_at to at unless it is set already
	// and returns the membership; not_found if user is not a member.
	AcceptMember(ctx context.Context, channel, user string, at time.Time) (Member, error)
	// RemoveMember removes user from channel, not_found if not a member.
	RemoveMember(ctx context.Context, channel, user string) error
	// PresenceChannels lists the ids of the channels on which user's
	// presence is published, at most limit, ordered by id: the private and
	// direct channels user belongs to and has accepted, where, for a direct
	// channel, the other member has accepted too, and where no member
	// blocks user or is blocked by user.
	PresenceChannels(ctx context.Context, user string, limit int) ([]string, error)
	// SharesChannel reports whether viewer may see target's presence
	// (GET /api/v1/presence): they are members of one channel that target
	// has accepted (a direct channel: both have), and neither blocks the
	// other.
	SharesChannel(ctx context.Context, viewer, target string) (bool, error)

	// Block records that blocker blocks blocked at at; blocking again
	// keeps the first record. It reports whether the block is new.
	Block(ctx context.Context, blocker, blocked string, at time.Time) (bool, error)
	// Unblock removes the block; it reports whether there was one.
	Unblock(ctx context.Context, blocker, blocked string) (bool, error)
	// Blocks lists the users blocker blocks, ordered by user, at most limit.
	Blocks(ctx context.Context, blocker string, limit int) ([]Block, error)
	// BlockBetween reports whether a blocks b and whether b blocks a.
	BlockBetween(ctx context.Context, a, b string) (aBlocksB, bBlocksA bool, err error)

	// AppendMessages stores a batch of new messages in ONE transaction. For
	// each append it assigns the channel's next offset (gapless, starting at
	// 1) unless the (channel, sender, client_msg_id) triple already names a
	// message, in which case that stored message comes back with Duplicate
	// set and nothing is stored. A per-append problem (unknown thread root,
	// channel gone) is reported in that result's Err and does not consume an
	// offset. A non-nil error means the whole batch was rolled back.
	AppendMessages(ctx context.Context, batch []Append) ([]AppendResult, error)
	// MessagesAfter returns the messages of channel with after < offset,
	// ascending, at most limit.
	MessagesAfter(ctx context.Context, channel string, after int64, limit int) ([]wire.Message, error)
	// History returns one page of channel's messages (see Page).
	History(ctx context.Context, channel string, p Page) ([]wire.Message, bool, error)
	// GetMessage returns message id of channel.
	GetMessage(ctx context.Context, channel, id string) (wire.Message, error)
	// EditMessage replaces the body of message id and sets edited_at.
	EditMessage(ctx context.Context, channel, id string, body Body, at time.Time) (wire.Message, error)
	// DeleteMessage turns message id into a tombstone: body cleared, deleted
	// set, edited_at = at, removed from the search index; offset kept.
	DeleteMessage(ctx context.Context, channel, id string, at time.Time) (wire.Message, error)
	// Thread returns the replies to root (offset > p.After), ascending.
	Thread(ctx context.Context, channel, root string, after int64, limit int) ([]wire.Message, bool, error)
	// Search runs a sanitized full-text query (see SanitizeQuery) over the
	// text of undeleted messages in channels q.Reader may read, excluding
	// e2ee channels; newest first.
	Search(ctx context.Context, q SearchQuery) ([]wire.Message, error)
}

// Append is one new message for Store.AppendMessages. Msg has every field
// set except Offset. Index tells the store to add the text to the search
// index (false for e2ee channels).
//
// Telemetry, when set, is the telemetry point that Msg relays (a device's
// reading in its device channel): the store writes it in the same
// transaction as the message, so that the point and the message are stored
// together or not at all and a batch of readings costs one commit. It is
// stored only when the message is (not for a duplicate or a per-append
// error), and moves the last_seen of its device forward as
// device.FleetStore.AppendTelemetry does; it reads back through
// device.FleetStore.QueryTelemetry. Only Service.QueueDeviceData sets it.
type Append struct {
	Msg       wire.Message
	Index     bool
	Telemetry *unhidra.TelemetryPoint
}

// AppendResult is the outcome of one Append.
type AppendResult struct {
	Msg       wire.Message
	Duplicate bool
	Err       error
}

// Page selects a page of history by offset. With After given (Forward,
// also after=0: from the first message) and no Before the page runs oldest
// first from After+1; otherwise it runs newest first, below Before when
// set. HasMore reports whether more messages lie beyond the page in its
// direction.
type Page struct {
	Before int64 // 0: no upper bound
	After  int64 // 0: no lower bound
	// Forward is set when the request named after (even 0).
	Forward bool
	Limit   int
}

// Ascending reports whether p reads oldest first.
func (p Page) Ascending() bool { return (p.After > 0 || p.Forward) && p.Before == 0 }

// SearchQuery is a full-text query as the Store runs it.
type SearchQuery struct {
	// Match is an FTS5 expression produced by SanitizeQuery.
	Match string
	// Channel restricts the search to one channel when set.
	Channel string
	Reader  Reader
	Limit   int
	// OnlyDeviceChannels restricts the search to device channels
	// (E2EE_ENFORCED: every other channel is end-to-end encrypted).
	OnlyDeviceChannels bool
}

// Reader says whose readable channels a search covers: public channels,
// channels User belongs to, every device channel when Admin, and the
// device's own channel when Device is set.
type Reader struct {
	User   string
	Admin  bool
	Device string
}

func isJSONNull(b []byte) bool { return bytes.Equal(bytes.TrimSpace(b), []byte("null")) }

func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}
