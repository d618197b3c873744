package sqlite

import (
	"context"
	"time"

	"github.com/unhidra/unhidra/internal/broker"
)

// RevocationFeed reads the sessions and devices revoked recently, by this
// process or any other one writing to the same database (the command line
// beside a running server). It is safe for concurrent use.
type RevocationFeed struct{ db *DB }

// NewRevocationFeed returns a feed over db.
func NewRevocationFeed(db *DB) *RevocationFeed { return &RevocationFeed{db: db} }

// MaxRevocationsPerRead bounds one Recent call.
const MaxRevocationsPerRead = 10000

// Recent returns the revocations of sessions and devices revoked at or after
// since, as broker events (session ids and device ids).
func (f *RevocationFeed) Recent(ctx context.Context, since time.Time) ([]broker.Revocation, error) {
	var out []broker.Revocation
	for _, q := range []struct{ kind, sql string }{
		{broker.RevokeSession, `SELECT id FROM sessions WHERE revoked_at >= ? ORDER BY revoked_at LIMIT ?`},
		{broker.RevokeDevice, `SELECT id FROM devices WHERE revoked_at >= ? ORDER BY revoked_at LIMIT ?`},
	} {
		rows, err := f.db.read.QueryContext(ctx, q.sql, Time(since), MaxRevocationsPerRead)
		if err != nil {
			return nil, Err(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, Err(err)
			}
			out = append(out, broker.Revocation{Kind: q.kind, ID: id})
		}
		if err := rows.Close(); err != nil {
			return nil, Err(err)
		}
		if err := rows.Err(); err != nil {
			return nil, Err(err)
		}
	}
	return out, nil
}
