package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// Checkpoints off the write path.
//
// By default SQLite checkpoints inside the COMMIT that pushes the WAL past
// 1,000 pages: that commit copies the WAL into the database file and
// fsyncs both, so every ~100th group commit stalls for milliseconds while
// the appends behind it wait. The writer connection therefore runs with
// wal_autocheckpoint=0, and a checkpointer with its own connection runs a
// PASSIVE checkpoint (it never blocks the writer or readers) whenever
// SyncWAL sees the WAL file past checkpointBytes (at most once per
// checkpointGap), and every checkpointEvery in any case (writes through Tx alone never call SyncWAL). The WAL restarts
// from its beginning after a complete checkpoint, and journal_size_limit
// truncates it back when a burst made it large.

const (
	checkpointBytes = 4 << 20 // about SQLite's default of 1,000 pages
	checkpointEvery = 5 * time.Second
	checkpointGap   = time.Second
)

type checkpointer struct {
	db   *sql.DB
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
	err  error
}

func startCheckpointer(path string) (*checkpointer, error) {
	c, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		return nil, err
	}
	c.SetMaxOpenConns(1)
	c.SetMaxIdleConns(1)
	c.SetConnMaxLifetime(0)
	c.SetConnMaxIdleTime(0)
	cp := &checkpointer{db: c, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go cp.run()
	return cp, nil
}

func (cp *checkpointer) run() {
	defer close(cp.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-cp.stop:
			return
		case <-cp.kick:
		case <-t.C:
		}
		// At most one checkpoint per checkpointGap: the WAL file keeps its
		// size when it restarts, so SyncWAL keeps asking while the writer is
		// busy; each checkpoint costs two fsyncs.
		if wait := checkpointGap - time.Since(last); wait > 0 {
			select {
			case <-cp.stop:
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		// An error (a busy database during a migration, say) is retried at
		// the next kick or tick; the WAL only grows meanwhile.
		_, _ = cp.db.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
	}
}

// request asks for a checkpoint without waiting.
func (cp *checkpointer) request() {
	select {
	case cp.kick <- struct{}{}:
	default:
	}
}

// close stops the checkpointer; later calls return the first's result
// (DB.Close may be called more than once).
func (cp *checkpointer) close() error {
	cp.once.Do(func() {
		close(cp.stop)
		<-cp.done
		cp.err = cp.db.Close()
	})
	return cp.err
}
