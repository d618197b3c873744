package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/keys"
)

var _ keys.Store = (*KeyStore)(nil)

// KeyStore keeps the end-to-end encryption key directory (keys.Store).
// Every write is one transaction on the single writer connection, so a
// claim's select-and-delete of a one-time key cannot interleave with
// another's: each key is handed out once.
type KeyStore struct{ db *DB }

// NewKeyStore returns the key directory store on db.
func NewKeyStore(db *DB) *KeyStore { return &KeyStore{db: db} }

var errNoKeyDevice = unhidra.Errorf(unhidra.ENOTFOUND, "no keys for that device")

// PutKeys implements keys.Store.
func (s *KeyStore) PutKeys(ctx context.Context, p keys.Put) (keys.PutResult, error) {
	var res keys.PutResult
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res = keys.PutResult{}
		var curve, ed string
		err := tx.QueryRowContext(ctx, `SELECT curve25519, ed25519 FROM e2ee_devices WHERE user_id = ? AND device_id = ?`,
			p.User, p.DeviceID).Scan(&curve, &ed)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2ee_devices WHERE user_id = ?`, p.User).Scan(&n); err != nil {
				return err
			}
			if n >= p.MaxDevices {
				return unhidra.Errorf(unhidra.ECONFLICT, "too many devices: a user may publish keys for at most %d; delete one first", p.MaxDevices)
			}
			res.Created = true
		case err != nil:
			return err
		case curve != p.Identity.Curve25519 || ed != p.Identity.Ed25519:
			// An identity-key change: nothing signed by the old identity
			// may be served for the new one.
			res.Replaced = true
			if _, err := tx.ExecContext(ctx, `DELETE FROM e2ee_devices WHERE user_id = ? AND device_id = ?`, p.User, p.DeviceID); err != nil {
				return err
			}
		}
		if res.Created || res.Replaced {
			_, err = tx.ExecContext(ctx, `INSERT INTO e2ee_devices (user_id, device_id, curve25519, ed25519, identity_signature, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, p.User, p.DeviceID, p.Identity.Curve25519, p.Identity.Ed25519, p.IdentitySignature, Time(p.At), Time(p.At))
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE e2ee_devices SET identity_signature = ?, updated_at = ? WHERE user_id = ? AND device_id = ?`,
				p.IdentitySignature, Time(p.At), p.User, p.DeviceID)
		}
		if err != nil {
			return err
		}
		if f := p.FallbackKey; f != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE e2ee_devices SET fallback_id = ?, fallback_key = ?, fallback_signature = ?
				WHERE user_id = ? AND device_id = ?`, f.ID, f.Key, f.Signature, p.User, p.DeviceID); err != nil {
				return err
			}
		}
		for _, k := range p.OneTimeKeys {
			// A key id the device already holds is skipped (a retried upload).
			if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_one_time_keys (user_id, device_id, key_id, key, signature, created_at)
				VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, p.User, p.DeviceID, k.ID, k.Key, k.Signature, Time(p.At)); err != nil {
				return err
			}
		}
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM e2ee_one_time_keys WHERE user_id = ? AND device_id = ?`,
			p.User, p.DeviceID).Scan(&res.OneTimeKeyCount); err != nil {
			return err
		}
		if res.OneTimeKeyCount > p.MaxKeys {
			return unhidra.Errorf(unhidra.EINVALID, "too many one-time keys: the device would hold %d, at most %d", res.OneTimeKeyCount, p.MaxKeys)
		}
		return nil
	})
	if err != nil {
		return keys.PutResult{}, Err(err)
	}
	return res, nil
}

const keyDeviceCols = `d.device_id, d.curve25519, d.ed25519, d.identity_signature, d.created_at, d.updated_at,
	(SELECT COUNT(*) FROM e2ee_one_time_keys k WHERE k.user_id = d.user_id AND k.device_id = d.device_id)`

func scanKeyDevice(user string, row interface{ Scan(...any) error }) (keys.Device, error) {
	d := keys.Device{User: user}
	var created, updated string
	if err := row.Scan(&d.DeviceID, &d.Identity.Curve25519, &d.Identity.Ed25519, &d.IdentitySignature, &created, &updated, &d.OneTimeKeyCount); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return d, errNoKeyDevice
		}
		return d, Err(err)
	}
	d.CreatedAt, _ = ParseTime(created)
	d.UpdatedAt, _ = ParseTime(updated)
	return d, nil
}

// Device implements keys.Store.
func (s *KeyStore) Device(ctx context.Context, user, deviceID string) (keys.Device, error) {
	return scanKeyDevice(user, s.db.Reader().QueryRowContext(ctx, `SELECT `+keyDeviceCols+` FROM e2ee_devices d
		WHERE d.user_id = ? AND d.device_id = ?`, user, deviceID))
}

// Devices implements keys.Store.
func (s *KeyStore) Devices(ctx context.Context, user string) ([]keys.Device, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT `+keyDeviceCols+` FROM e2ee_devices d
		WHERE d.user_id = ? ORDER BY d.device_id`, user)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	out := []keys.Device{}
	for rows.Next() {
		d, err := scanKeyDevice(user, rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, Err(rows.Err())
}

// Claim implements keys.Store: the device's oldest one-time key is read and
// deleted in one write transaction.
func (s *KeyStore) Claim(ctx context.Context, user, deviceID string) (keys.Bundle, error) {
	var b keys.Bundle
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		b = keys.Bundle{User: user, DeviceID: deviceID}
		var fid, fkey, fsig sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT curve25519, ed25519, identity_signature, fallback_id, fallback_key, fallback_signature
			FROM e2ee_devices WHERE user_id = ? AND device_id = ?`, user, deviceID).
			Scan(&b.Identity.Curve25519, &b.Identity.Ed25519, &b.IdentitySignature, &fid, &fkey, &fsig)
		if errors.Is(err, sql.ErrNoRows) {
			return errNoKeyDevice
		}
		if err != nil {
			return err
		}
		if fid.Valid {
			b.FallbackKey = &keys.SignedKey{ID: fid.String, Key: fkey.String, Signature: fsig.String}
		}
		var k keys.SignedKey
		err = tx.QueryRowContext(ctx, `DELETE FROM e2ee_one_time_keys WHERE rowid = (
				SELECT rowid FROM e2ee_one_time_keys WHERE user_id = ? AND device_id = ? ORDER BY rowid LIMIT 1)
			RETURNING key_id, key, signature`, user, deviceID).Scan(&k.ID, &k.Key, &k.Signature)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			b.OneTimeKey = &k
		}
		return nil
	})
	if err != nil {
		return keys.Bundle{}, Err(err)
	}
	return b, nil
}

// Count implements keys.Store.
func (s *KeyStore) Count(ctx context.Context, user, deviceID string) (int, error) {
	d, err := s.Device(ctx, user, deviceID)
	return d.OneTimeKeyCount, err
}

// DeleteDevice implements keys.Store; the device's one-time keys go with it
// (ON DELETE CASCADE).
func (s *KeyStore) DeleteDevice(ctx context.Context, user, deviceID string) error {
	return Err(s.db.Tx(ctx, func(tx *sql.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM e2ee_devices WHERE user_id = ? AND device_id = ?`, user, deviceID)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return errNoKeyDevice
		}
		return nil
	}))
}

// DeleteUser implements keys.Store: every device of user goes, with its
// one-time keys (ON DELETE CASCADE), in one transaction.
func (s *KeyStore) DeleteUser(ctx context.Context, user string) ([]string, error) {
	var ids []string
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		ids = []string{}
		rows, err := tx.QueryContext(ctx, `DELETE FROM e2ee_devices WHERE user_id = ? RETURNING device_id`, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, Err(err)
	}
	slices.Sort(ids)
	return ids, nil
}
