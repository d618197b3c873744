package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/auth"
)

var _ auth.Store = (*AuthStore)(nil)

// AuthStore keeps users, sessions and refresh tokens (auth.Store).
type AuthStore struct{ db *DB }

// NewAuthStore returns the auth store on db.
func NewAuthStore(db *DB) *AuthStore { return &AuthStore{db: db} }

const userColumns = `username, display_name, password_hash, roles, verified, disabled, created_at`

func scanUser(row interface{ Scan(...any) error }) (auth.User, error) {
	var u auth.User
	var roles, created string
	if err := row.Scan(&u.Username, &u.DisplayName, &u.PasswordHash, &roles, &u.Verified, &u.Disabled, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return u, unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
		}
		return u, Err(err)
	}
	u.Roles = splitRoles(roles)
	u.CreatedAt, _ = ParseTime(created)
	return u, nil
}

func splitRoles(s string) []string {
	out := []string{}
	for _, r := range strings.Split(s, ",") {
		if r != "" {
			out = append(out, r)
		}
	}
	return out
}

// CreateUser inserts u; a name taken in any letter case is a conflict.
func (s *AuthStore) CreateUser(ctx context.Context, u auth.User) error {
	now := Time(u.CreatedAt)
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (username, display_name, password_hash, roles, verified, disabled, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			strings.ToLower(u.Username), u.DisplayName, u.PasswordHash, strings.Join(u.Roles, ","), u.Verified, u.Disabled, now, now)
		return err
	})
	if IsConstraint(err) {
		return unhidra.Errorf(unhidra.ECONFLICT, "username is taken")
	}
	return err
}

// User returns one user by name (case-insensitive).
func (s *AuthStore) User(ctx context.Context, username string) (auth.User, error) {
	return scanUser(s.db.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE username = ?`, username))
}

// Users lists every user by name.
func (s *AuthStore) Users(ctx context.Context) ([]auth.User, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY username`)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []auth.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, Err(rows.Err())
}

// CountUsers returns the number of users.
func (s *AuthStore) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`).Scan(&n)
	return n, Err(err)
}

func (s *AuthStore) update(ctx context.Context, query string, args ...any) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
		}
		return nil
	})
}

// SetDisplayName changes a display name and returns the user.
func (s *AuthStore) SetDisplayName(ctx context.Context, username, displayName string, at time.Time) (auth.User, error) {
	if err := s.update(ctx, `UPDATE users SET display_name = ?, updated_at = ? WHERE username = ?`, displayName, Time(at), username); err != nil {
		return auth.User{}, err
	}
	return s.User(ctx, username)
}

// SetVerified marks a user verified.
func (s *AuthStore) SetVerified(ctx context.Context, username string, at time.Time) error {
	return s.update(ctx, `UPDATE users SET verified = 1, updated_at = ? WHERE username = ?`, Time(at), username)
}

// SetPasswordHash replaces a password hash.
func (s *AuthStore) SetPasswordHash(ctx context.Context, username, hash string, at time.Time) error {
	return s.update(ctx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?`, hash, Time(at), username)
}

// revokeUserSessions revokes the user's active sessions except keep.
func revokeUserSessions(ctx context.Context, tx *sql.Tx, username, keep, reason string, at time.Time) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = ?
		WHERE username = ? AND revoked_at IS NULL AND id != ? RETURNING id`, Time(at), reason, username, keep)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// ChangePassword replaces the hash and revokes the user's other sessions in
// one transaction.
func (s *AuthStore) ChangePassword(ctx context.Context, username, hash, keepSession string, at time.Time) ([]string, error) {
	var ids []string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?`, hash, Time(at), username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
		}
		ids, err = revokeUserSessions(ctx, tx, username, keepSession, "password change", at)
		return err
	})
	return ids, err
}

// DisableUser disables the user and revokes all its sessions.
func (s *AuthStore) DisableUser(ctx context.Context, username string, at time.Time) ([]string, error) {
	var ids []string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET disabled = 1, updated_at = ? WHERE username = ?`, Time(at), username)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(unhidra.ENOTFOUND, "user not found")
		}
		ids, err = revokeUserSessions(ctx, tx, username, "", "account disabled", at)
		return err
	})
	return ids, err
}

// CreateSession stores a session and its first refresh token.
func (s *AuthStore) CreateSession(ctx context.Context, sess auth.Session, refreshHash []byte) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, username, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			sess.ID, sess.Username, Time(sess.CreatedAt), Time(sess.ExpiresAt)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			refreshHash, sess.ID, Time(sess.CreatedAt), Time(sess.ExpiresAt))
		return err
	})
}

// RotateRefresh retires oldHash and stores newHash, or detects reuse.
func (s *AuthStore) RotateRefresh(ctx context.Context, oldHash, newHash []byte, now, expires time.Time) (auth.RotateResult, error) {
	var res auth.RotateResult
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var sid, user, tokExp, roles string
		var used, revoked sql.NullString
		var disabled bool
		err := tx.QueryRowContext(ctx, `SELECT r.session_id, r.expires_at, r.used_at, s.username, s.revoked_at, u.disabled, u.roles
			FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id JOIN users u ON u.username = s.username
			WHERE r.hash = ?`, oldHash).Scan(&sid, &tokExp, &used, &user, &revoked, &disabled, &roles)
		if errors.Is(err, sql.ErrNoRows) {
			return unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid refresh token")
		}
		if err != nil {
			return err
		}
		res.Session = auth.SessionState{ID: sid, Username: user, Roles: splitRoles(roles), Revoked: revoked.Valid, UserDisabled: disabled}
		if used.Valid {
			res.Reused = true
			if !revoked.Valid {
				_, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = 'refresh token reuse' WHERE id = ?`, Time(now), sid)
				res.Session.Revoked = true
				return err
			}
			return nil
		}
		exp, _ := ParseTime(tokExp)
		if revoked.Valid || disabled || !now.Before(exp) {
			return unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid refresh token")
		}
		r, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL`, Time(now), oldHash)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n != 1 {
			return unhidra.Errorf(unhidra.EUNAUTHORIZED, "invalid refresh token")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			newHash, sid, Time(now), Time(expires)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE sessions SET expires_at = ? WHERE id = ?`, Time(expires), sid)
		res.Session.ExpiresAt = expires
		return err
	})
	return res, err
}

// RevokeSession revokes one session.
func (s *AuthStore) RevokeSession(ctx context.Context, sid, reason string, at time.Time) (bool, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL`, Time(at), reason, sid)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n > 0, err
}

// SessionState returns what token verification needs about a session.
func (s *AuthStore) SessionState(ctx context.Context, sid string) (auth.SessionState, error) {
	var st auth.SessionState
	var revoked sql.NullString
	var exp, roles string
	err := s.db.read.QueryRowContext(ctx, `SELECT s.id, s.username, s.revoked_at, s.expires_at, u.disabled, u.roles
		FROM sessions s JOIN users u ON u.username = s.username WHERE s.id = ?`, sid).
		Scan(&st.ID, &st.Username, &revoked, &exp, &st.UserDisabled, &roles)
	if errors.Is(err, sql.ErrNoRows) {
		return st, unhidra.Errorf(unhidra.ENOTFOUND, "session not found")
	}
	if err != nil {
		return st, Err(err)
	}
	st.Revoked = revoked.Valid
	st.ExpiresAt, _ = ParseTime(exp)
	st.Roles = splitRoles(roles)
	return st, nil
}

// CountActiveSessions counts sessions neither revoked nor expired.
func (s *AuthStore) CountActiveSessions(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.db.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?`, Time(now)).Scan(&n)
	return n, Err(err)
}

// PruneSessions deletes sessions expired or revoked before before; their
// refresh tokens go with them (ON DELETE CASCADE).
func (s *AuthStore) PruneSessions(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		b := Time(before)
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ? OR revoked_at < ?`, b, b)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}
