package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
)

var _ device.Store = (*DeviceStore)(nil)

// DeviceStore keeps the device registry (device.Store).
type DeviceStore struct{ db *DB }

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
	if IsConstraint(err) {
		return unhidra.Errorf(unhidra.ECONFLICT, "device_id is taken")
	}
	return err
}

// Device returns one device.
func (s *DeviceStore) Device(ctx context.Context, id string) (device.Device, error) {
	return scanDevice(s.db.read.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
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
		res, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = COALESCE(revoked_at, ?), online = 0 WHERE id = ?`, Time(at), id)
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
		res, err := tx.ExecContext(ctx, `UPDATE devices SET key_hash = ? WHERE id = ? AND revoked_at IS NULL`, hash, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
		}
		return nil
	})
}
