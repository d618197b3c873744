package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
)

const commandCols = `id, device_id, name, params, status, result, created_by, created_at, deadline, delivered_at, completed_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanCommand(r rowScanner) (device.Command, error) {
	var c device.Command
	var params, result, delivered, completed sql.NullString
	var created, deadline string
	if err := r.Scan(&c.ID, &c.DeviceID, &c.Name, &params, &c.Status, &result, &c.CreatedBy, &created, &deadline, &delivered, &completed); err != nil {
		return c, err
	}
	var err error
	if c.CreatedAt, err = ParseTime(created); err != nil {
		return c, err
	}
	if c.Deadline, err = ParseTime(deadline); err != nil {
		return c, err
	}
	if params.Valid {
		c.Params = json.RawMessage(params.String)
	}
	if result.Valid {
		c.Result = json.RawMessage(result.String)
	}
	for _, f := range []struct {
		s   sql.NullString
		dst **time.Time
	}{{delivered, &c.DeliveredAt}, {completed, &c.CompletedAt}} {
		if f.s.Valid {
			t, err := ParseTime(f.s.String)
			if err != nil {
				return c, err
			}
			*f.dst = &t
		}
	}
	return c, nil
}

func nullJSON(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	return string(raw)
}

// CreateCommand stores a new command. A revoked device takes none
// (conflict), checked in the same transaction as the insert so that a
// revocation cannot slip in between.
func (s *FleetStore) CreateCommand(ctx context.Context, c device.Command) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		var revoked sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT revoked_at FROM devices WHERE id = ?`, c.DeviceID).Scan(&revoked)
		switch {
		case err == sql.ErrNoRows:
			return unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
		case err != nil:
			return err
		case revoked.Valid:
			return unhidra.Errorf(unhidra.ECONFLICT, "device is revoked")
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO commands (`+commandCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
			c.ID, c.DeviceID, c.Name, nullJSON(c.Params), c.Status, nullJSON(c.Result), c.CreatedBy, Time(c.CreatedAt), Time(c.Deadline))
		if IsConstraint(err) {
			return unhidra.Errorf(unhidra.ECONFLICT, "command exists")
		}
		return err
	})
}

// GetCommand returns a command of the device.
func (s *FleetStore) GetCommand(ctx context.Context, deviceID, commandID string) (device.Command, error) {
	c, err := scanCommand(s.db.Reader().QueryRowContext(ctx, `SELECT `+commandCols+` FROM commands WHERE id = ? AND device_id = ?`, commandID, deviceID))
	if err == sql.ErrNoRows {
		return c, unhidra.Errorf(unhidra.ENOTFOUND, "command not found")
	}
	return c, Err(err)
}

// PendingCommands returns the device's pending commands with deadline > now.
func (s *FleetStore) PendingCommands(ctx context.Context, deviceID string, now time.Time, limit int) ([]device.Command, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT `+commandCols+` FROM commands
		WHERE device_id = ? AND status = 'pending' AND deadline > ? ORDER BY created_at, id LIMIT ?`, deviceID, Time(now), limit)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	var out []device.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, Err(err)
		}
		out = append(out, c)
	}
	return out, Err(rows.Err())
}

// TransitionCommand moves a command from one of from to to.
func (s *FleetStore) TransitionCommand(ctx context.Context, deviceID, commandID string, from []string, to string, result json.RawMessage, at time.Time) (device.Command, bool, error) {
	var c device.Command
	var moved bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		c, err = scanCommand(tx.QueryRowContext(ctx, `SELECT `+commandCols+` FROM commands WHERE id = ? AND device_id = ?`, commandID, deviceID))
		if err == sql.ErrNoRows {
			return unhidra.Errorf(unhidra.ENOTFOUND, "command not found")
		}
		if err != nil {
			return err
		}
		ok := false
		for _, f := range from {
			ok = ok || c.Status == f
		}
		if !ok {
			return nil
		}
		col := "completed_at"
		if to == device.CommandDelivered || to == device.CommandPending {
			col = "delivered_at"
		}
		args := []any{to, Time(at)}
		set := `status = ?, ` + col + ` = ?`
		if result != nil {
			set += `, result = ?`
			args = append(args, string(result))
		}
		args = append(args, commandID, deviceID, c.Status)
		if _, err := tx.ExecContext(ctx, `UPDATE commands SET `+set+` WHERE id = ? AND device_id = ? AND status = ?`, args...); err != nil {
			return err
		}
		moved = true
		c.Status = to
		t := at
		if col == "delivered_at" {
			c.DeliveredAt = &t
		} else {
			c.CompletedAt = &t
		}
		if result != nil {
			c.Result = result
		}
		return nil
	})
	return c, moved, err
}

// ExpireCommands times out open commands whose deadline is at or before now.
func (s *FleetStore) ExpireCommands(ctx context.Context, now time.Time, limit int) ([]device.Command, error) {
	var out []device.Command
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `SELECT `+commandCols+` FROM commands
			WHERE status IN ('pending', 'delivered') AND deadline <= ? ORDER BY deadline LIMIT ?`, Time(now), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			c, err := scanCommand(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		ids := make([]any, 0, len(out)+2)
		ids = append(ids, device.CommandTimeout, Time(now))
		for i := range out {
			ids = append(ids, out[i].ID)
			out[i].Status = device.CommandTimeout
			t := now
			out[i].CompletedAt = &t
		}
		_, err = tx.ExecContext(ctx, `UPDATE commands SET status = ?, completed_at = ? WHERE id IN (?`+strings.Repeat(", ?", len(out)-1)+`)`, ids...)
		return err
	})
	return out, err
}
