package sqlite

// Members, the presence queries over them, user blocks and last_seen:
// the membership side of ChatStore.

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/unhidra/unhidra/internal/chat"
)

func scanMember(sc scanner) (chat.Member, error) {
	var m chat.Member
	var joined string
	var accepted sql.NullString
	if err := sc.Scan(&m.User, &m.Role, &joined, &accepted); err != nil {
		return chat.Member{}, err
	}
	t, err := ParseTime(joined)
	if err != nil {
		return chat.Member{}, err
	}
	m.JoinedAt = t
	if m.AcceptedAt, err = parseTimePtr(accepted); err != nil {
		return chat.Member{}, err
	}
	return m, nil
}

// GetMember implements chat.Store.
func (s *ChatStore) GetMember(ctx context.Context, channel, user string) (chat.Member, error) {
	m, err := scanMember(s.getMember.QueryRowContext(ctx, channel, user))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Member{}, errMemberNotFound
	}
	return m, Err(err)
}

// Members implements chat.Store.
func (s *ChatStore) Members(ctx context.Context, channel string) ([]chat.Member, error) {
	rows, err := s.listMembers.QueryContext(ctx, channel)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []chat.Member{}
	for rows.Next() {
		m, err := scanMember(rows)
		if err != nil {
			return nil, Err(err)
		}
		out = append(out, m)
	}
	return out, Err(rows.Err())
}

// PutMember implements chat.Store.
func (s *ChatStore) PutMember(ctx context.Context, channel string, m chat.Member) (bool, error) {
	var added bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM channels WHERE id = ?`, channel).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errChannelNotFound
		}
		res, err := tx.ExecContext(ctx, `UPDATE channel_members SET role = ? WHERE channel_id = ? AND user_id = ?`, m.Role, channel, m.User)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		added = true
		_, err = tx.ExecContext(ctx, `INSERT INTO channel_members (channel_id, user_id, role, joined_at, accepted_at) VALUES (?, ?, ?, ?, ?)`,
			channel, m.User, m.Role, Time(m.JoinedAt), timeArg(m.AcceptedAt))
		return err
	})
	return added, err
}

// AcceptMember implements chat.Store.
func (s *ChatStore) AcceptMember(ctx context.Context, channel, user string, at time.Time) (chat.Member, error) {
	var out chat.Member
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE channel_members SET accepted_at = ? WHERE channel_id = ? AND user_id = ? AND accepted_at IS NULL`,
			Time(at), channel, user); err != nil {
			return err
		}
		m, err := scanMember(tx.QueryRowContext(ctx, `SELECT `+memberCols+` FROM channel_members WHERE channel_id = ? AND user_id = ?`, channel, user))
		if errors.Is(err, sql.ErrNoRows) {
			return errMemberNotFound
		}
		out = m
		return err
	})
	return out, err
}

// RemoveMember implements chat.Store.
func (s *ChatStore) RemoveMember(ctx context.Context, channel, user string) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM channel_members WHERE channel_id = ? AND user_id = ?`, channel, user)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errMemberNotFound
		}
		return nil
	})
}

// PresenceChannels implements chat.Store (and presence.Channels).
func (s *ChatStore) PresenceChannels(ctx context.Context, user string, limit int) ([]string, error) {
	rows, err := s.presenceChannels.QueryContext(ctx, user, limit)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, Err(err)
		}
		out = append(out, id)
	}
	return out, Err(rows.Err())
}

// SharesChannel implements chat.Store (and presence.Peers).
func (s *ChatStore) SharesChannel(ctx context.Context, viewer, target string) (bool, error) {
	var one int
	err := s.sharesChannel.QueryRowContext(ctx, viewer, target).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, Err(err)
}

// Block implements chat.Store.
func (s *ChatStore) Block(ctx context.Context, blocker, blocked string, at time.Time) (bool, error) {
	var added bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO user_blocks (blocker, blocked, created_at) VALUES (?, ?, ?)
			ON CONFLICT (blocker, blocked) DO NOTHING`, blocker, blocked, Time(at))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		added = n > 0
		return nil
	})
	return added, err
}

// Unblock implements chat.Store.
func (s *ChatStore) Unblock(ctx context.Context, blocker, blocked string) (bool, error) {
	var removed bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM user_blocks WHERE blocker = ? AND blocked = ?`, blocker, blocked)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		removed = n > 0
		return nil
	})
	return removed, err
}

// Blocks implements chat.Store.
func (s *ChatStore) Blocks(ctx context.Context, blocker string, limit int) ([]chat.Block, error) {
	rows, err := s.listBlocks.QueryContext(ctx, blocker, limit)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []chat.Block{}
	for rows.Next() {
		var b chat.Block
		var at string
		if err := rows.Scan(&b.User, &at); err != nil {
			return nil, Err(err)
		}
		if b.CreatedAt, err = ParseTime(at); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, Err(rows.Err())
}

// BlockBetween implements chat.Store.
func (s *ChatStore) BlockBetween(ctx context.Context, a, b string) (bool, bool, error) {
	rows, err := s.blockBetween.QueryContext(ctx, a, b)
	if err != nil {
		return false, false, Err(err)
	}
	defer rows.Close()
	var ab, ba bool
	for rows.Next() {
		var blocker string
		if err := rows.Scan(&blocker); err != nil {
			return false, false, Err(err)
		}
		if blocker == a {
			ab = true
		} else {
			ba = true
		}
	}
	return ab, ba, Err(rows.Err())
}

// SetLastSeen records when principal kind/id was last connected.
func (s *ChatStore) SetLastSeen(ctx context.Context, kind, id string, t time.Time) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO last_seen (kind, id, last_seen) VALUES (?, ?, ?)
			ON CONFLICT (kind, id) DO UPDATE SET last_seen = excluded.last_seen WHERE excluded.last_seen > last_seen.last_seen`,
			kind, id, Time(t))
		return err
	})
}

// LastSeen returns the recorded last_seen of each of ids that has one.
func (s *ChatStore) LastSeen(ctx context.Context, kind string, ids []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		var v string
		err := s.lastSeen.QueryRowContext(ctx, kind, id).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, Err(err)
		}
		t, err := ParseTime(v)
		if err != nil {
			return nil, err
		}
		out[id] = t
	}
	return out, nil
}
