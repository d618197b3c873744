package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
)

var _ device.Store = (*DeviceStore)(nil)

// DeviceStore keeps the device registry (device.Store). Device ids are
// case-insensitive (migration 0008): every lookup by id finds the device in
// any letter case and returns it with its id as stored, which is the
// device's canonical id. When two ids stored before that migration differ
// only in case, the exact match wins.
type DeviceStore struct{ db *DB }

// byID is the WHERE clause of a lookup by id in any case; it takes the id
// twice.
const byID = ` WHERE id = ? COLLATE NOCASE ORDER BY id = ? DESC LIMIT 1`

// NewDeviceStore returns the device registry store on db.
func NewDeviceStore(db *DB) *DeviceStore { return &DeviceStore{db: db} }

const deviceColumns = `id, name, owner, created_at, revoked_at, online, last_seen`

func scanDevice(row interface{ Scan(...any) error }, extra ...any) (device.Device, error) {
	var d device.Device
	var created string
	var revoked, seen sql.NullString
	dest := append([]any{&d.ID, &d.Name, &d.Owner, &created, &revoked, &d.Online, &seen}, extra...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return d, unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
		}
		return d, Err(err)
	}
	d.CreatedAt, _ = ParseTime(created)
	if revoked.Valid {
		t, _ := ParseTime(revoked.String)
		d.Revoked, d.RevokedAt = true, &t
	}
	if seen.Valid {
		t, _ := ParseTime(seen.String)
		d.LastSeen = &t
	}
	return d, nil
}

// CreateDevice inserts a device with its key hash; a taken id is a conflict.
func (s *DeviceStore) CreateDevice(ctx context.Context, d device.Device, keyHash []byte) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO devices (id, name, owner, key_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
			d.ID, d.Name, d.Owner, keyHash, Time(d.CreatedAt))
		return err
	})
	if IsConstraint(err) || isTriggerConstraint(err) {
		return unhidra.Errorf(unhidra.ECONFLICT, "device_id is taken")
	}
	return err
}

// isTriggerConstraint reports a RAISE(ABORT) of a trigger, such as the
// case-insensitive uniqueness of device ids.
func isTriggerConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_TRIGGER
}

// Device returns one device.
func (s *DeviceStore) Device(ctx context.Context, id string) (device.Device, error) {
	return scanDevice(s.db.read.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices`+byID, id, id))
}

// Devices lists devices of owner (all when owner is empty) by id.
func (s *DeviceStore) Devices(ctx context.Context, owner string) ([]device.Device, error) {
	q, args := `SELECT `+deviceColumns+` FROM devices ORDER BY id`, []any{}
	if owner != "" {
		q, args = `SELECT `+deviceColumns+` FROM devices WHERE owner = ? ORDER BY id`, []any{owner}
	}
	rows, err := s.db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []device.Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, Err(rows.Err())
}

// DeviceByKeyHash finds the device whose key hashes to hash.
func (s *DeviceStore) DeviceByKeyHash(ctx context.Context, hash []byte) (device.Device, []byte, error) {
	var stored []byte
	d, err := scanDevice(s.db.read.QueryRowContext(ctx, `SELECT `+deviceColumns+`, key_hash FROM devices WHERE key_hash = ?`, hash), &stored)
	return d, stored, err
}

// RevokeDevice marks a device revoked (idempotent).
func (s *DeviceStore) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = COALESCE(revoked_at, ?), online = 0 WHERE id = (SELECT id FROM devices`+byID+`)`, Time(at), id, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
		}
		return nil
	})
}

// SetKeyHash replaces the key hash of a device that is not revoked.
func (s *DeviceStore) SetKeyHash(ctx context.Context, id string, hash []byte) error {
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET key_hash = ? WHERE id = (SELECT id FROM devices`+byID+`) AND revoked_at IS NULL`, hash, id, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
		}
		return nil
	})
}
