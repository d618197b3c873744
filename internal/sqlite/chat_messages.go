package sqlite

// Messages: the group-committed append (with the telemetry points that
// ride along), history, edits, threads and search: the message side of
// ChatStore.

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/chat"
	"github.com/unhidra/unhidra/wire"
)

type idemKey struct{ channel, kind, sender, cmid string }

// AppendMessages implements chat.Store: the whole batch in one BEGIN
// IMMEDIATE transaction (one fsync), offsets assigned from
// channels.last_offset.
func (s *ChatStore) AppendMessages(ctx context.Context, batch []chat.Append) ([]chat.AppendResult, error) {
	return s.appendMessages(ctx, batch, s.db.Tx)
}

// AppendMessagesDeferred implements chat.DeferredStore: AppendMessages
// whose transaction is durable only after the next Sync (DB.TxDeferred).
func (s *ChatStore) AppendMessagesDeferred(ctx context.Context, batch []chat.Append) ([]chat.AppendResult, error) {
	return s.appendMessages(ctx, batch, s.db.TxDeferred)
}

// Sync implements chat.DeferredStore (DB.SyncWAL).
func (s *ChatStore) Sync(context.Context) error { return s.db.SyncWAL() }

func (s *ChatStore) appendMessages(ctx context.Context, batch []chat.Append, inTx func(context.Context, func(*sql.Tx) error) error) ([]chat.AppendResult, error) {
	var results []chat.AppendResult
	var stored int // telemetry points stored beside the messages
	err := inTx(ctx, func(tx *sql.Tx) error {
		// The statements run without ctx's deadline: with a context that
		// can end, the driver starts a watcher goroutine for every
		// statement, thousands per batch. ctx still bounds the wait for the
		// writer connection; a statement cannot hang (busy_timeout bounds
		// the wait for another process's lock).
		ctx := context.WithoutCancel(ctx)
		results = make([]chat.AppendResult, len(batch))
		chOff := tx.StmtContext(ctx, s.wChannelOff)
		idem := tx.StmtContext(ctx, s.wIdem)
		root := tx.StmtContext(ctx, s.wThreadRoot)
		ins := tx.StmtContext(ctx, s.wInsert)
		fts := tx.StmtContext(ctx, s.wFTSInsert)
		setOff := tx.StmtContext(ctx, s.wSetOff)
		offs := map[string]int64{}
		dirty := map[string]bool{}
		seen := map[idemKey]int{}
		points := telemetryRows{ins: s.wTelemetry, up: s.wLastSeen} // points stored beside their messages (chat.Append.Telemetry)
		defer points.close()
		for i, a := range batch {
			m := a.Msg
			last, ok := offs[m.Channel]
			if !ok {
				err := chOff.QueryRowContext(ctx, m.Channel).Scan(&last)
				if errors.Is(err, sql.ErrNoRows) {
					results[i].Err = errChannelNotFound
					continue
				}
				if err != nil {
					return err
				}
				offs[m.Channel] = last
			}
			var key idemKey
			if m.ClientMsgID != "" {
				key = idemKey{m.Channel, m.Sender.Kind, m.Sender.ID, m.ClientMsgID}
				if j, ok := seen[key]; ok {
					results[i] = chat.AppendResult{Msg: results[j].Msg, Duplicate: true}
					continue
				}
				prev, err := scanMessage(idem.QueryRowContext(ctx, m.Channel, m.Sender.Kind, m.Sender.ID, m.ClientMsgID))
				if err == nil {
					results[i] = chat.AppendResult{Msg: prev, Duplicate: true}
					continue
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
			if m.ThreadID != "" {
				var rootChan string
				var rootThread sql.NullString
				err := root.QueryRowContext(ctx, m.ThreadID).Scan(&rootChan, &rootThread)
				if errors.Is(err, sql.ErrNoRows) || (err == nil && rootChan != m.Channel) {
					results[i].Err = unhidra.Errorf(unhidra.EINVALID, "thread_id does not name a message in this channel")
					continue
				}
				if err != nil {
					return err
				}
				if rootThread.Valid && rootThread.String != "" {
					m.ThreadID = rootThread.String // a reply to a reply joins the root's thread
				}
			}
			m.Offset = last + 1
			res, err := ins.ExecContext(ctx, m.ID, m.Channel, m.Offset, m.Sender.Kind, m.Sender.ID, Time(m.CreatedAt),
				nullStr(m.ClientMsgID), nullStr(m.ThreadID), textArg(m.Text), nullBytes(m.Data), nullBytes(m.E2EE))
			if err != nil {
				return err
			}
			if a.Index && m.Text != nil {
				seq, err := res.LastInsertId()
				if err != nil {
					return err
				}
				if _, err := fts.ExecContext(ctx, seq, *m.Text); err != nil {
					return err
				}
			}
			if a.Telemetry != nil {
				if err := points.add(ctx, tx, a.Telemetry); err != nil {
					return err
				}
			}
			offs[m.Channel] = m.Offset
			dirty[m.Channel] = true
			results[i] = chat.AppendResult{Msg: m}
			if m.ClientMsgID != "" {
				seen[key] = i
			}
		}
		for ch := range dirty {
			if _, err := setOff.ExecContext(ctx, offs[ch], ch); err != nil {
				return err
			}
		}
		stored = points.n
		return points.finish(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	s.db.fold.added(stored)
	return results, nil
}

// MessagesAfter implements chat.Store.
func (s *ChatStore) MessagesAfter(ctx context.Context, channel string, after int64, limit int) ([]wire.Message, error) {
	return scanMessages(s.after.QueryContext(ctx, channel, after, limit))
}

// History implements chat.Store.
func (s *ChatStore) History(ctx context.Context, channel string, p chat.Page) ([]wire.Message, bool, error) {
	var msgs []wire.Message
	var err error
	if p.Ascending() {
		msgs, err = scanMessages(s.after.QueryContext(ctx, channel, p.After, p.Limit+1))
	} else {
		before := p.Before
		if before <= 0 {
			before = math.MaxInt64
		}
		msgs, err = scanMessages(s.historyDesc.QueryContext(ctx, channel, before, p.After, p.Limit+1))
	}
	if err != nil {
		return nil, false, err
	}
	more := len(msgs) > p.Limit
	if more {
		msgs = msgs[:p.Limit]
	}
	return msgs, more, nil
}

// GetMessage implements chat.Store.
func (s *ChatStore) GetMessage(ctx context.Context, channel, id string) (wire.Message, error) {
	m, err := scanMessage(s.getMessage.QueryRowContext(ctx, id, channel))
	if errors.Is(err, sql.ErrNoRows) {
		return wire.Message{}, errMessageNotFound
	}
	return m, Err(err)
}

// EditMessage implements chat.Store.
func (s *ChatStore) EditMessage(ctx context.Context, channel, id string, body chat.Body, at time.Time) (wire.Message, error) {
	var out wire.Message
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var seq int64
		var deleted int
		err := tx.QueryRowContext(ctx, `SELECT seq, deleted FROM messages WHERE id = ? AND channel_id = ?`, id, channel).Scan(&seq, &deleted)
		if errors.Is(err, sql.ErrNoRows) {
			return errMessageNotFound
		}
		if err != nil {
			return err
		}
		if deleted != 0 {
			return unhidra.Errorf(unhidra.ECONFLICT, "the message was deleted")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET text = ?, data = ?, e2ee = ?, edited_at = ? WHERE seq = ?`,
			textArg(body.Text), nullBytes(body.Data), nullBytes(body.E2EE), Time(at), seq); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, s.wFTSDelete).ExecContext(ctx, seq); err != nil {
			return err
		}
		if body.Text != nil {
			var e2ee int
			if err := tx.QueryRowContext(ctx, `SELECT e2ee FROM channels WHERE id = ?`, channel).Scan(&e2ee); err != nil {
				return err
			}
			if e2ee == 0 {
				if _, err := tx.StmtContext(ctx, s.wFTSInsert).ExecContext(ctx, seq, *body.Text); err != nil {
					return err
				}
			}
		}
		out, err = scanMessage(tx.QueryRowContext(ctx, `SELECT `+msgCols+` FROM messages WHERE seq = ?`, seq))
		return err
	})
	return out, err
}

// DeleteMessage implements chat.Store.
func (s *ChatStore) DeleteMessage(ctx context.Context, channel, id string, at time.Time) (wire.Message, error) {
	var out wire.Message
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var seq int64
		err := tx.QueryRowContext(ctx, `SELECT seq FROM messages WHERE id = ? AND channel_id = ?`, id, channel).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			return errMessageNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET text = NULL, data = NULL, e2ee = NULL, deleted = 1,
			edited_at = CASE WHEN deleted = 1 THEN edited_at ELSE ? END WHERE seq = ?`, Time(at), seq); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, s.wFTSDelete).ExecContext(ctx, seq); err != nil {
			return err
		}
		out, err = scanMessage(tx.QueryRowContext(ctx, `SELECT `+msgCols+` FROM messages WHERE seq = ?`, seq))
		return err
	})
	return out, err
}

// Thread implements chat.Store.
func (s *ChatStore) Thread(ctx context.Context, channel, root string, after int64, limit int) ([]wire.Message, bool, error) {
	msgs, err := scanMessages(s.thread.QueryContext(ctx, root, channel, after, limit+1))
	if err != nil {
		return nil, false, err
	}
	more := len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	return msgs, more, nil
}

// Search implements chat.Store. The FTS index is walked newest first
// (rowid descending) and filtered by what the reader may see.
func (s *ChatStore) Search(ctx context.Context, q chat.SearchQuery) ([]wire.Message, error) {
	var b strings.Builder
	args := []any{q.Match}
	b.WriteString(`SELECT m.id, m.channel_id, m.off, m.sender_kind, m.sender_id, m.created_at, m.client_msg_id, m.thread_id,
		m.text, m.data, m.e2ee, m.edited_at, m.deleted
		FROM messages_fts f
		JOIN messages m ON m.seq = f.rowid
		JOIN channels c ON c.id = m.channel_id
		WHERE messages_fts MATCH ? AND m.deleted = 0 AND c.e2ee = 0`)
	if q.Channel != "" {
		b.WriteString(` AND m.channel_id = ?`)
		args = append(args, q.Channel)
	}
	if q.OnlyDeviceChannels {
		b.WriteString(` AND c.kind = 'device'`)
	}
	switch {
	case q.Reader.Device != "":
		b.WriteString(` AND c.id = ?`)
		args = append(args, chat.DeviceChannelID(q.Reader.Device))
	case q.Reader.User != "":
		b.WriteString(` AND (c.kind = 'public' OR (? AND c.kind = 'device')
			OR EXISTS (SELECT 1 FROM channel_members cm WHERE cm.channel_id = c.id AND cm.user_id = ?))`)
		args = append(args, q.Reader.Admin, q.Reader.User)
	default:
		return []wire.Message{}, nil
	}
	b.WriteString(` ORDER BY f.rowid DESC LIMIT ?`)
	args = append(args, q.Limit)
	msgs, err := scanMessages(s.db.Reader().QueryContext(ctx, b.String(), args...))
	if err != nil && unhidra.ErrorCode(err) == unhidra.EINTERNAL && strings.Contains(err.Error(), "fts5") {
		// The sanitizer should make this impossible; never a 500 for a query.
		return nil, unhidra.Wrap(unhidra.EINVALID, "invalid search query", err)
	}
	return msgs, err
}
