package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// Telemetry folding (migration 0013).
//
// A stored reading is appended to telemetry_recent in its group commit:
// one leaf at the right edge of a rowid table, shared by every point of
// the commit, where an insert into telemetry_points, keyed by device and
// time, dirties a leaf per device. The folder moves telemetry_recent into
// telemetry_points in the background: it reads a range of recent points,
// sorts them by key, inserts them a chunk per transaction (many points of
// one device per leaf), then deletes the range. Between the inserts and the
// delete a point is in both tables; the view telemetry, and QueryTelemetry,
// count it once. A crash anywhere leaves a state the next fold finishes:
// inserts are INSERT OR IGNORE, so points moved before the crash are not
// duplicated.
//
// The folder starts with the first point stored through this DB (tools
// that open a database and never write telemetry never write to it) and
// folds when foldRows points are waiting or foldEvery after the first one
// of a fold, whichever comes first. Each transaction holds the writer for
// at most foldChunk points, so group commits wait for it briefly.

const (
	foldRows  = 20000
	foldEvery = 2 * time.Second
	foldChunk = 2000
	foldMax   = 100000 // points read into memory by one FoldTelemetry
)

type folder struct {
	db      *DB
	pending atomic.Int64 // points appended since the last fold began
	start   sync.Once
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex // serialises FoldTelemetry
	stopped atomic.Bool
	ctx     context.Context // cancelled by close: a fold in progress stops
	cancel  context.CancelFunc
}

func newFolder(db *DB) *folder {
	ctx, cancel := context.WithCancel(context.Background())
	return &folder{db: db, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// added notes n points appended to telemetry_recent by a committed
// transaction.
func (f *folder) added(n int) {
	if n <= 0 || f.stopped.Load() {
		return
	}
	f.start.Do(func() { go f.run() })
	if f.pending.Add(int64(n)) >= foldRows {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

func (f *folder) run() {
	defer close(f.done)
	t := time.NewTicker(foldEvery)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-f.kick:
		case <-t.C:
			if f.pending.Load() == 0 {
				continue
			}
		}
		// An error (a full disk, say) is retried at the next tick: the
		// points wait in telemetry_recent and stay visible meanwhile.
		for {
			n, err := f.db.FoldTelemetry(f.ctx)
			if err != nil || n < foldMax || f.stopped.Load() {
				break
			}
		}
	}
}

// close stops the folder; points not yet folded stay in telemetry_recent.
func (f *folder) close() {
	f.stopped.Store(true)
	f.start.Do(func() { close(f.done) }) // never started
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.cancel()
	<-f.done
}

// recentPoint is a row of telemetry_recent.
type recentPoint struct {
	pid                    int64
	device, ts, data, recv string
	id                     int64
	seq                    sql.NullInt64
}

// FoldTelemetry moves the points in telemetry_recent (the oldest foldMax of
// them) into telemetry_points and returns how many it moved. The folder calls it in the background;
// tests and tools may call it to fold at once.
func (db *DB) FoldTelemetry(ctx context.Context) (int, error) {
	f := db.fold
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending.Store(0)
	var first, last int64
	if err := db.read.QueryRowContext(ctx, `SELECT COALESCE(MIN(pid), 0), COALESCE(MAX(pid), 0) FROM telemetry_recent`).Scan(&first, &last); err != nil {
		return 0, Err(err)
	}
	if last == 0 {
		return 0, nil
	}
	last = min(last, first+foldMax-1)
	pts, err := db.recentPoints(ctx, first, last)
	if err != nil {
		return 0, err
	}
	for len(pts) > 0 {
		n := min(foldChunk, len(pts))
		if err := db.TxDeferred(ctx, func(tx *sql.Tx) error { return insertPoints(ctx, tx, pts[:n]) }); err != nil {
			return 0, err
		}
		pts = pts[n:]
	}
	// Delete the folded range in chunks of pid, oldest first.
	moved := 0
	for lo := first - 1; lo < last; lo += foldChunk {
		hi := min(lo+foldChunk, last)
		err := db.TxDeferred(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM telemetry_recent WHERE pid > ? AND pid <= ?`, lo, hi)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			moved += int(n)
			return err
		})
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// recentPoints reads the points of telemetry_recent with first <= pid <=
// last, in key order.
func (db *DB) recentPoints(ctx context.Context, first, last int64) ([]recentPoint, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT pid, device_id, ts, id, seq, data, received_at
		FROM telemetry_recent WHERE pid >= ? AND pid <= ? ORDER BY device_id, ts, id`, first, last)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	var pts []recentPoint
	for rows.Next() {
		var p recentPoint
		if err := rows.Scan(&p.pid, &p.device, &p.ts, &p.id, &p.seq, &p.data, &p.recv); err != nil {
			return nil, Err(err)
		}
		pts = append(pts, p)
	}
	return pts, Err(rows.Err())
}

func insertPoints(ctx context.Context, tx *sql.Tx, pts []recentPoint) error {
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO telemetry_points (device_id, ts, id, seq, data, received_at) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for _, p := range pts {
		if _, err := ins.ExecContext(ctx, p.device, p.ts, p.id, p.seq, p.data, p.recv); err != nil {
			return err
		}
	}
	return nil
}
