package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"sync"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/device"
)

var _ device.FleetStore = (*FleetStore)(nil)

// FleetStore is the SQLite device.FleetStore: telemetry points, commands
// and the online/last_seen columns of the devices table. It is safe for
// concurrent use.
type FleetStore struct {
	db *DB
}

// NewFleetStore returns a FleetStore on db (migrated).
func NewFleetStore(db *DB) *FleetStore { return &FleetStore{db: db} }

// AppendTelemetry stores points in one transaction and moves last_seen of
// their devices forward.
func (s *FleetStore) AppendTelemetry(ctx context.Context, points []device.TelemetryPoint) error {
	if len(points) == 0 {
		return nil
	}
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var rows telemetryRows
		defer rows.close()
		for i := range points {
			if err := rows.add(ctx, tx, &points[i]); err != nil {
				return err
			}
		}
		return rows.finish(ctx, tx)
	})
	if err == nil {
		s.db.fold.added(len(points))
	}
	return err
}

// telemetryRows writes telemetry points inside a transaction that is
// already open: AppendTelemetry's, or ChatStore.AppendMessages' for the
// point a device-channel message relays (chat.Append.Telemetry), so that
// the point and the message cost one commit. finish moves the devices'
// last_seen forward; close releases what the transaction holds. ins and up
// are the statements qTelemetryInsert and qLastSeen prepared on the writer
// (ChatStore prepares them once, so the hot path never parses SQL); nil
// ones are prepared in the transaction.
type telemetryRows struct {
	ins, up *sql.Stmt
	txIns   *sql.Stmt
	seen    map[string]time.Time
	n       int // points added
}

// The statements of the telemetry write path.
const (
	qTelemetryInsert = `INSERT INTO telemetry_recent (device_id, ts, id, seq, data, received_at) VALUES (?, ?, ?, ?, ?, ?)` // fold.go moves them on
	qLastSeen        = `UPDATE devices SET last_seen = ? WHERE id = ? AND (last_seen IS NULL OR last_seen <= ?)`
)

// bind returns the statement st (or query, prepared) for use in tx.
func bind(ctx context.Context, tx *sql.Tx, st *sql.Stmt, query string) (*sql.Stmt, error) {
	if st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	return tx.PrepareContext(ctx, query)
}

func (r *telemetryRows) add(ctx context.Context, tx *sql.Tx, p *unhidra.TelemetryPoint) error {
	if r.txIns == nil {
		ins, err := bind(ctx, tx, r.ins, qTelemetryInsert)
		if err != nil {
			return err
		}
		r.txIns = ins
		r.seen = make(map[string]time.Time)
	}
	var seq any
	if p.Seq != nil {
		seq = *p.Seq
	}
	if _, err := r.txIns.ExecContext(ctx, p.DeviceID, Time(p.TS), nextTelemetryID(), seq, string(p.Data), Time(p.ReceivedAt)); err != nil {
		return err
	}
	if p.ReceivedAt.After(r.seen[p.DeviceID]) {
		r.seen[p.DeviceID] = p.ReceivedAt
	}
	r.n++
	return nil
}

// telemetryIDs hands out telemetry ids: increasing within the process and
// larger than any id an earlier process stored (they start from the clock
// in nanoseconds, unless the clock went back by more than the time since
// that process wrote its last point).
var telemetryIDs struct {
	sync.Mutex
	last int64
}

func nextTelemetryID() int64 {
	telemetryIDs.Lock()
	defer telemetryIDs.Unlock()
	telemetryIDs.last = max(telemetryIDs.last+1, time.Now().UnixNano())
	return telemetryIDs.last
}

// LastSeenResolution is how far telemetry moves a device's last_seen
// forward at least: a point received within it of the stored last_seen
// leaves the row alone, so a device sending many points a second does not
// rewrite its devices row in every batch. (Connects, disconnects and
// heartbeats set last_seen exactly.)
const LastSeenResolution = time.Second

func (r *telemetryRows) finish(ctx context.Context, tx *sql.Tx) error {
	if len(r.seen) == 0 {
		return nil
	}
	up, err := bind(ctx, tx, r.up, qLastSeen)
	if err != nil {
		return err
	}
	defer up.Close()
	for id, at := range r.seen {
		if _, err := up.ExecContext(ctx, Time(at), id, Time(at.Add(-LastSeenResolution))); err != nil {
			return err
		}
	}
	return nil
}

func (r *telemetryRows) close() {
	if r.txIns != nil {
		r.txIns.Close() // the transaction's statement (or binding)
		r.txIns = nil
	}
}

// QueryTelemetry returns points with since <= ts < until, oldest first.
func (s *FleetStore) QueryTelemetry(ctx context.Context, deviceID string, since, until time.Time, limit int) ([]device.TelemetryPoint, error) {
	// Both stages of fold.go, merged in key order: the compound SELECT
	// reads telemetry_points in its key's order and stops at the limit.
	rows, err := s.db.Reader().QueryContext(ctx, `
		SELECT ts, id, seq, data, received_at FROM telemetry_points
		WHERE device_id = ?1 AND ts >= ?2 AND ts < ?3
		UNION ALL
		SELECT ts, id, seq, data, received_at FROM telemetry_recent r
		WHERE device_id = ?1 AND ts >= ?2 AND ts < ?3 AND NOT EXISTS
			(SELECT 1 FROM telemetry_points p WHERE p.device_id = r.device_id AND p.ts = r.ts AND p.id = r.id)
		ORDER BY 1, 2 LIMIT ?4`,
		deviceID, Time(since), Time(until), limit)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	var out []device.TelemetryPoint
	for rows.Next() {
		var ts, recv, data string
		var id int64
		var seq sql.NullInt64
		if err := rows.Scan(&ts, &id, &seq, &data, &recv); err != nil {
			return nil, Err(err)
		}
		p := device.TelemetryPoint{DeviceID: deviceID, Data: json.RawMessage(data)}
		if p.TS, err = ParseTime(ts); err != nil {
			return nil, err
		}
		if p.ReceivedAt, err = ParseTime(recv); err != nil {
			return nil, err
		}
		if seq.Valid {
			v := seq.Int64
			p.Seq = &v
		}
		out = append(out, p)
	}
	return out, Err(rows.Err())
}

// PruneTelemetry deletes points with ts < before, device by device (the
// table is keyed by device and time), in chunks so that the writer is never
// held for long. It does not run beside a fold (fold.go), which could put
// back a point it had read before the prune.
func (s *FleetStore) PruneTelemetry(ctx context.Context, before time.Time) (int64, error) {
	const chunk = 5000
	var devices []string
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT id FROM devices ORDER BY id`)
	if err != nil {
		return 0, Err(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, Err(err)
		}
		devices = append(devices, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, Err(err)
	}
	s.db.fold.mu.Lock()
	defer s.db.fold.mu.Unlock()
	// Points not folded yet (fold.go): the table is small, one pass.
	var total int64
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM telemetry_recent WHERE ts < ?`, Time(before))
		if err != nil {
			return err
		}
		total, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, d := range devices {
		for {
			var n int64
			err := s.db.Tx(ctx, func(tx *sql.Tx) error {
				res, err := tx.ExecContext(ctx, `DELETE FROM telemetry_points WHERE (device_id, ts, id) IN
					(SELECT device_id, ts, id FROM telemetry_points WHERE device_id = ? AND ts < ? ORDER BY ts LIMIT ?)`, d, Time(before), chunk)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			if err != nil {
				return total, err
			}
			total += n
			if n < chunk {
				break
			}
		}
	}
	return total, nil
}

// SetOnline records online state and last_seen; it reports whether online
// changed. An unknown device is not_found; a revoked device stays offline
// (forbidden), so a heartbeat from a session that outlived the revocation
// does not show it online again.
func (s *FleetStore) SetOnline(ctx context.Context, deviceID string, online bool, at time.Time) (bool, error) {
	var changed bool
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		var cur sql.NullInt64
		var revoked sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT online, revoked_at FROM devices WHERE id = ?`, deviceID).Scan(&cur, &revoked)
		if err == sql.ErrNoRows {
			return unhidra.Errorf(unhidra.ENOTFOUND, "device not found")
		}
		if err != nil {
			return err
		}
		if online && revoked.Valid {
			return unhidra.Errorf(unhidra.EFORBIDDEN, "device is revoked")
		}
		v := 0
		if online {
			v = 1
		}
		changed = !cur.Valid || cur.Int64 != int64(v)
		_, err = tx.ExecContext(ctx, `UPDATE devices SET online = ?, last_seen = ? WHERE id = ?`, v, Time(at), deviceID)
		return err
	})
	return changed, err
}

// ResetOnline marks every device offline.
func (s *FleetStore) ResetOnline(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET online = 0 WHERE online <> 0`)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
