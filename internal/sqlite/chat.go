package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

var _ chat.Store = (*ChatStore)(nil)

// ChatStore is the SQLite chat.Store, and the presence last_seen store.
//
// Offsets: channels.last_offset holds the newest offset; AppendMessages
// reads it, assigns last+1, +2, … and writes it back in the same BEGIN
// IMMEDIATE transaction, with UNIQUE(channel_id, off) as the backstop, so
// offsets are gapless and every reader sees one order. Search: a contentless
// FTS5 table (rowid = messages.seq) holds the text of messages of channels
// that are not e2ee and is kept in sync here. Reads use the reader pool.
// Safe for concurrent use.
//
// This file holds its statements and channels; chat_members.go members,
// presence queries, blocks and last_seen; chat_messages.go the messages
// (the append, with the telemetry points that ride along, history, edits,
// threads and search).
type ChatStore struct {
	db *DB

	// reader statements
	getChannel, channelAccess, findDirect, getMember, listMembers, listChannels, presenceChannels *sql.Stmt
	sharesChannel, blockBetween, listBlocks, creations, created                                   *sql.Stmt
	after, historyDesc, getMessage, thread, lastSeen                                              *sql.Stmt
	// writer statements (used through tx.StmtContext)
	wChannelOff, wIdem, wThreadRoot, wInsert, wFTSInsert, wFTSDelete, wSetOff *sql.Stmt
	wTelemetry, wLastSeen                                                     *sql.Stmt // telemetryRows'
}

const msgCols = `id, channel_id, off, sender_kind, sender_id, created_at, client_msg_id, thread_id, text, data, e2ee, edited_at, deleted`
const chanCols = `id, name, kind, e2ee, topic, created_by, created_at, last_offset, direct_key`
const memberCols = `user_id, role, joined_at, accepted_at`

// NewChatStore prepares the chat store's statements. The database must be
// migrated.
func NewChatStore(ctx context.Context, db *DB) (*ChatStore, error) {
	s := &ChatStore{db: db}
	r, w := db.Reader(), db.Writer()
	prep := []struct {
		dst  **sql.Stmt
		pool *sql.DB
		q    string
	}{
		{&s.getChannel, r, `SELECT ` + chanCols + ` FROM channels WHERE id = ?`},
		{&s.channelAccess, r, `SELECT c.id, c.name, c.kind, c.e2ee, c.topic, c.created_by, c.created_at, c.last_offset, c.direct_key,
				coalesce(m.role, ''), coalesce(m.joined_at, ''), m.accepted_at
			FROM channels c LEFT JOIN channel_members m ON m.channel_id = c.id AND m.user_id = ? WHERE c.id = ?`},
		{&s.findDirect, r, `SELECT ` + chanCols + ` FROM channels WHERE direct_key = ?`},
		{&s.getMember, r, `SELECT ` + memberCols + ` FROM channel_members WHERE channel_id = ? AND user_id = ?`},
		{&s.listMembers, r, `SELECT ` + memberCols + ` FROM channel_members WHERE channel_id = ? ORDER BY user_id`},
		{&s.listChannels, r, `WITH mine AS (SELECT channel_id FROM channel_members WHERE user_id = ?)
			SELECT ` + chanCols + ` FROM channels
			WHERE kind = 'public'
			   OR id IN mine
			   OR (? AND kind = 'device')
			ORDER BY kind = 'public' AND id NOT IN mine, id LIMIT ?`},
		{&s.presenceChannels, r, `SELECT c.id FROM channel_members m JOIN channels c ON c.id = m.channel_id
			WHERE m.user_id = ?1 AND m.accepted_at IS NOT NULL AND c.kind IN ('private', 'direct')
			  AND (c.kind <> 'direct' OR (SELECT COUNT(*) FROM channel_members o
			       WHERE o.channel_id = c.id AND o.accepted_at IS NOT NULL) = 2)
			  AND NOT EXISTS (SELECT 1 FROM channel_members o JOIN user_blocks b ON b.blocker = ?1 AND b.blocked = o.user_id
			       WHERE o.channel_id = c.id)
			  AND NOT EXISTS (SELECT 1 FROM channel_members o JOIN user_blocks b ON b.blocked = ?1 AND b.blocker = o.user_id
			       WHERE o.channel_id = c.id)
			ORDER BY c.id LIMIT ?2`},
		{&s.sharesChannel, r, `SELECT 1 FROM channel_members x
			JOIN channel_members y ON y.channel_id = x.channel_id AND y.user_id = ?2
			JOIN channels c ON c.id = x.channel_id
			WHERE x.user_id = ?1 AND y.accepted_at IS NOT NULL AND (c.kind <> 'direct' OR x.accepted_at IS NOT NULL)
			  AND NOT EXISTS (SELECT 1 FROM user_blocks b WHERE (b.blocker = ?1 AND b.blocked = ?2) OR (b.blocker = ?2 AND b.blocked = ?1))
			LIMIT 1`},
		{&s.blockBetween, r, `SELECT blocker FROM user_blocks WHERE (blocker = ?1 AND blocked = ?2) OR (blocker = ?2 AND blocked = ?1)`},
		{&s.listBlocks, r, `SELECT blocked, created_at FROM user_blocks WHERE blocker = ? ORDER BY blocked LIMIT ?`},
		{&s.creations, r, `SELECT COUNT(*), coalesce(MIN(created_at), '') FROM channel_creations WHERE user_id = ? AND created_at > ?`},
		{&s.created, r, `SELECT COUNT(*) FROM channels WHERE created_by = ? AND kind IN ('public', 'private')`},
		{&s.after, r, `SELECT ` + msgCols + ` FROM messages WHERE channel_id = ? AND off > ? ORDER BY off LIMIT ?`},
		{&s.historyDesc, r, `SELECT ` + msgCols + ` FROM messages WHERE channel_id = ? AND off < ? AND off > ? ORDER BY off DESC LIMIT ?`},
		{&s.getMessage, r, `SELECT ` + msgCols + ` FROM messages WHERE id = ? AND channel_id = ?`},
		{&s.thread, r, `SELECT ` + msgCols + ` FROM messages WHERE thread_id = ? AND channel_id = ? AND off > ? ORDER BY off LIMIT ?`},
		{&s.lastSeen, r, `SELECT last_seen FROM last_seen WHERE kind = ? AND id = ?`},
		{&s.wChannelOff, w, `SELECT last_offset FROM channels WHERE id = ?`},
		{&s.wIdem, w, `SELECT ` + msgCols + ` FROM messages WHERE channel_id = ? AND sender_kind = ? AND sender_id = ? AND client_msg_id = ?`},
		{&s.wThreadRoot, w, `SELECT channel_id, thread_id FROM messages WHERE id = ?`},
		{&s.wInsert, w, `INSERT INTO messages (id, channel_id, off, sender_kind, sender_id, created_at, client_msg_id, thread_id, text, data, e2ee)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&s.wFTSInsert, w, `INSERT INTO messages_fts (rowid, text) VALUES (?, ?)`},
		{&s.wFTSDelete, w, `DELETE FROM messages_fts WHERE rowid = ?`},
		{&s.wSetOff, w, `UPDATE channels SET last_offset = ? WHERE id = ?`},
		{&s.wTelemetry, w, qTelemetryInsert},
		{&s.wLastSeen, w, qLastSeen},
	}
	for _, p := range prep {
		st, err := p.pool.PrepareContext(ctx, p.q)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite: chat store: prepare %q: %w", strings.Fields(p.q)[0:3], err)
		}
		*p.dst = st
	}
	return s, nil
}

// Close releases the prepared statements (not the database).
func (s *ChatStore) Close() error {
	for _, st := range []*sql.Stmt{s.getChannel, s.channelAccess, s.findDirect, s.getMember, s.listMembers, s.listChannels, s.presenceChannels,
		s.sharesChannel, s.blockBetween, s.listBlocks, s.creations, s.created,
		s.after, s.historyDesc, s.getMessage, s.thread, s.lastSeen,
		s.wChannelOff, s.wIdem, s.wThreadRoot, s.wInsert, s.wFTSInsert, s.wFTSDelete, s.wSetOff, s.wTelemetry, s.wLastSeen} {
		if st != nil {
			st.Close()
		}
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanChannel(sc scanner) (chat.Channel, error) {
	var c chat.Channel
	var e2ee int
	var created string
	var direct sql.NullString
	if err := sc.Scan(&c.ID, &c.Name, &c.Kind, &e2ee, &c.Topic, &c.CreatedBy, &created, &c.LastOffset, &direct); err != nil {
		return chat.Channel{}, err
	}
	c.E2EE = e2ee != 0
	c.DirectKey = direct.String
	t, err := ParseTime(created)
	if err != nil {
		return chat.Channel{}, fmt.Errorf("sqlite: channel %s: created_at: %w", c.ID, err)
	}
	c.CreatedAt = t
	return c, nil
}

func scanMessage(sc scanner) (wire.Message, error) {
	var m wire.Message
	var created string
	var cmid, thread, text, edited sql.NullString
	var data, e2ee []byte
	var deleted int
	if err := sc.Scan(&m.ID, &m.Channel, &m.Offset, &m.Sender.Kind, &m.Sender.ID, &created, &cmid, &thread, &text, &data, &e2ee, &edited, &deleted); err != nil {
		return wire.Message{}, err
	}
	t, err := ParseTime(created)
	if err != nil {
		return wire.Message{}, fmt.Errorf("sqlite: message %s: created_at: %w", m.ID, err)
	}
	m.CreatedAt = t
	m.ClientMsgID = cmid.String
	m.ThreadID = thread.String
	if text.Valid {
		s := text.String
		m.Text = &s
	}
	if len(data) > 0 {
		m.Data = data
	}
	if len(e2ee) > 0 {
		m.E2EE = e2ee
	}
	if edited.Valid {
		et, err := ParseTime(edited.String)
		if err != nil {
			return wire.Message{}, fmt.Errorf("sqlite: message %s: edited_at: %w", m.ID, err)
		}
		m.EditedAt = &et
	}
	m.Deleted = deleted != 0
	return m, nil
}

func scanMessages(rows *sql.Rows, err error) ([]wire.Message, error) {
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []wire.Message{}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, Err(err)
		}
		out = append(out, m)
	}
	return out, Err(rows.Err())
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

func textArg(t *string) any {
	if t == nil {
		return nil
	}
	return *t
}

var (
	errChannelNotFound = unhidra.Errorf(unhidra.ENOTFOUND, "channel not found")
	errMessageNotFound = unhidra.Errorf(unhidra.ENOTFOUND, "message not found")
	errMemberNotFound  = unhidra.Errorf(unhidra.ENOTFOUND, "not a member of this channel")
)

// CreateChannel implements chat.Store.
func (s *ChatStore) CreateChannel(ctx context.Context, ch chat.Channel, directKey string, members []chat.Member) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		e2ee := 0
		if ch.E2EE {
			e2ee = 1
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO channels (id, name, kind, e2ee, topic, created_by, created_at, direct_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, ch.ID, ch.Name, ch.Kind, e2ee, ch.Topic, ch.CreatedBy, Time(ch.CreatedAt), nullStr(directKey))
		if IsConstraint(err) {
			return unhidra.Wrap(unhidra.ECONFLICT, "channel already exists", err)
		}
		if err != nil {
			return err
		}
		for _, m := range members {
			if _, err := tx.ExecContext(ctx, `INSERT INTO channel_members (channel_id, user_id, role, joined_at, accepted_at) VALUES (?, ?, ?, ?, ?)`,
				ch.ID, m.User, m.Role, Time(m.JoinedAt), timeArg(m.AcceptedAt)); err != nil {
				if IsConstraint(err) {
					return unhidra.Wrap(unhidra.ECONFLICT, "duplicate member", err)
				}
				return err
			}
		}
		if ch.Kind == chat.KindDevice {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM channel_creations WHERE user_id = ? AND created_at < ?`,
			ch.CreatedBy, Time(ch.CreatedAt.Add(-chat.QuotaWindow))); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO channel_creations (user_id, created_at) VALUES (?, ?)`, ch.CreatedBy, Time(ch.CreatedAt))
		return err
	})
}

func timeArg(t *time.Time) any {
	if t == nil {
		return nil
	}
	return Time(*t)
}

// CreationsSince implements chat.Store.
func (s *ChatStore) CreationsSince(ctx context.Context, user string, since time.Time) (int, time.Time, error) {
	var n int
	var oldest string
	if err := s.creations.QueryRowContext(ctx, user, Time(since)).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, Err(err)
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	t, err := ParseTime(oldest)
	if err != nil {
		return 0, time.Time{}, err
	}
	return n, t, nil
}

// CreatedChannels implements chat.Store.
func (s *ChatStore) CreatedChannels(ctx context.Context, user string) (int, error) {
	var n int
	err := s.created.QueryRowContext(ctx, user).Scan(&n)
	return n, Err(err)
}

// GetChannel implements chat.Store.
func (s *ChatStore) GetChannel(ctx context.Context, id string) (chat.Channel, error) {
	c, err := scanChannel(s.getChannel.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Channel{}, errChannelNotFound
	}
	return c, Err(err)
}

// ChannelAccess implements chat.Store.
func (s *ChatStore) ChannelAccess(ctx context.Context, id, user string) (chat.Channel, chat.Member, error) {
	var c chat.Channel
	var m chat.Member
	var e2ee int
	var created, joined string
	var direct, accepted sql.NullString
	err := s.channelAccess.QueryRowContext(ctx, user, id).Scan(&c.ID, &c.Name, &c.Kind, &e2ee, &c.Topic, &c.CreatedBy, &created, &c.LastOffset, &direct,
		&m.Role, &joined, &accepted)
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Channel{}, chat.Member{}, errChannelNotFound
	}
	if err != nil {
		return chat.Channel{}, chat.Member{}, Err(err)
	}
	c.E2EE = e2ee != 0
	c.DirectKey = direct.String
	if c.CreatedAt, err = ParseTime(created); err != nil {
		return chat.Channel{}, chat.Member{}, fmt.Errorf("sqlite: channel %s: created_at: %w", c.ID, err)
	}
	if m.Role == "" {
		return c, chat.Member{}, nil
	}
	m.User = user
	if m.JoinedAt, err = ParseTime(joined); err != nil {
		return chat.Channel{}, chat.Member{}, fmt.Errorf("sqlite: member %s: joined_at: %w", user, err)
	}
	if m.AcceptedAt, err = parseTimePtr(accepted); err != nil {
		return chat.Channel{}, chat.Member{}, fmt.Errorf("sqlite: member %s: accepted_at: %w", user, err)
	}
	return c, m, nil
}

func parseTimePtr(v sql.NullString) (*time.Time, error) {
	if !v.Valid {
		return nil, nil
	}
	t, err := ParseTime(v.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// FindDirect implements chat.Store.
func (s *ChatStore) FindDirect(ctx context.Context, directKey string) (chat.Channel, error) {
	c, err := scanChannel(s.findDirect.QueryRowContext(ctx, directKey))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Channel{}, errChannelNotFound
	}
	return c, Err(err)
}

// ListChannels implements chat.Store.
func (s *ChatStore) ListChannels(ctx context.Context, user string, devices bool, limit int) ([]chat.Channel, error) {
	rows, err := s.listChannels.QueryContext(ctx, user, devices, limit)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []chat.Channel{}
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, Err(err)
		}
		out = append(out, c)
	}
	return out, Err(rows.Err())
}

// UpdateChannel implements chat.Store.
func (s *ChatStore) UpdateChannel(ctx context.Context, id, name, topic string) (chat.Channel, error) {
	var out chat.Channel
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE channels SET name = ?, topic = ? WHERE id = ?`, name, topic, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errChannelNotFound
		}
		out, err = scanChannel(tx.QueryRowContext(ctx, `SELECT `+chanCols+` FROM channels WHERE id = ?`, id))
		return err
	})
	return out, err
}

// DeleteChannel implements chat.Store.
func (s *ChatStore) DeleteChannel(ctx context.Context, id string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages_fts WHERE rowid IN (SELECT seq FROM messages WHERE channel_id = ?)`, id); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM channels WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errChannelNotFound
		}
		return nil
	})
}
