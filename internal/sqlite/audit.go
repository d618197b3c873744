package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// AuditStore is the audit log's store (audit.Store) in the database:
// tables audit_records, audit_nodes and audit_heads, append-only by
// trigger (migration 0010).
type AuditStore struct{ db *DB }

// NewAuditStore returns the audit store over db.
func NewAuditStore(db *DB) *AuditStore { return &AuditStore{db: db} }

var _ audit.Store = (*AuditStore)(nil)

// AppendAudit implements audit.Store: one durable transaction per batch.
func (s *AuditStore) AppendAudit(ctx context.Context, b *audit.Batch) error {
	if len(b.Rows) == 0 {
		return nil
	}
	return s.db.Tx(ctx, func(tx *sql.Tx) error {
		var next uint64
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_records`).Scan(&next); err != nil {
			return err
		}
		if b.Rows[0].Seq != next {
			return unhidra.Errorf(unhidra.ECONFLICT, "audit: batch starts at record %d, the log holds %d", b.Rows[0].Seq, next)
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO audit_records (seq, ts, actor_kind, actor_id, action, target, outcome, entry, leaf) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for i := range b.Rows {
			r := &b.Rows[i]
			if r.Seq != next+uint64(i) {
				return unhidra.Errorf(unhidra.ECONFLICT, "audit: batch is not consecutive at record %d", r.Seq)
			}
			if _, err := ins.ExecContext(ctx, int64(r.Seq), r.Time.UnixNano(), r.ActorKind, r.ActorID, r.Action, r.Target, r.Outcome, r.Entry, r.Leaf[:]); err != nil {
				return err
			}
		}
		if len(b.Nodes) > 0 {
			nodes, err := tx.PrepareContext(ctx, `INSERT INTO audit_nodes (size, level, hash) VALUES (?, ?, ?)`)
			if err != nil {
				return err
			}
			defer nodes.Close()
			for _, n := range b.Nodes {
				if _, err := nodes.ExecContext(ctx, int64(audit.NodeSize(n.ID)), int(n.ID.Level), n.Hash[:]); err != nil {
					return err
				}
			}
		}
		h := b.Head
		_, err = tx.ExecContext(ctx, `INSERT INTO audit_heads (size, ts, root, note) VALUES (?, ?, ?, ?)`, int64(h.Size), h.Time.UnixNano(), h.Root[:], string(h.Note))
		return err
	})
}

// AuditHead implements audit.Store.
func (s *AuditStore) AuditHead(ctx context.Context) (audit.Head, error) {
	var h audit.Head
	var size, ts int64
	var root []byte
	var note string
	err := s.db.read.QueryRowContext(ctx, `SELECT size, ts, root, note FROM audit_heads ORDER BY size DESC LIMIT 1`).Scan(&size, &ts, &root, &note)
	if err == sql.ErrNoRows {
		return h, nil
	}
	if err != nil {
		return h, Err(err)
	}
	if len(root) != merkle.HashSize {
		return h, unhidra.Errorf(unhidra.EINTERNAL, "audit: head of size %d has a root of %d bytes", size, len(root))
	}
	h.Size, h.Time, h.Note = uint64(size), time.Unix(0, ts).UTC(), []byte(note)
	copy(h.Root[:], root)
	return h, nil
}

// AuditNodes implements audit.Store: one query for the leaves, one for
// the higher nodes.
func (s *AuditStore) AuditNodes(ctx context.Context, ids []merkle.NodeID) ([]merkle.Hash, error) {
	out := make([]merkle.Hash, len(ids))
	found := make([]bool, len(ids))
	var leaves, nodes []int
	for i, id := range ids {
		if id.Level == 0 {
			leaves = append(leaves, i)
		} else {
			nodes = append(nodes, i)
		}
	}
	if len(leaves) > 0 {
		args := make([]any, len(leaves))
		for j, i := range leaves {
			args[j] = int64(ids[i].Index)
		}
		rows, err := s.db.read.QueryContext(ctx, `SELECT seq, leaf FROM audit_records WHERE seq IN (`+placeholders(len(args))+`)`, args...)
		if err != nil {
			return nil, Err(err)
		}
		for rows.Next() {
			var seq int64
			var h []byte
			if err := rows.Scan(&seq, &h); err != nil {
				rows.Close()
				return nil, Err(err)
			}
			for _, i := range leaves {
				if ids[i].Index == uint64(seq) && len(h) == merkle.HashSize {
					copy(out[i][:], h)
					found[i] = true
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, Err(err)
		}
	}
	if len(nodes) > 0 {
		var where []string
		var args []any
		for _, i := range nodes {
			where = append(where, "(size = ? AND level = ?)")
			args = append(args, int64(audit.NodeSize(ids[i])), int(ids[i].Level))
		}
		rows, err := s.db.read.QueryContext(ctx, `SELECT size, level, hash FROM audit_nodes WHERE `+strings.Join(where, " OR "), args...)
		if err != nil {
			return nil, Err(err)
		}
		for rows.Next() {
			var size int64
			var level int
			var h []byte
			if err := rows.Scan(&size, &level, &h); err != nil {
				rows.Close()
				return nil, Err(err)
			}
			id := audit.NodeAt(uint64(size), uint8(level))
			for _, i := range nodes {
				if ids[i] == id && len(h) == merkle.HashSize {
					copy(out[i][:], h)
					found[i] = true
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, Err(err)
		}
	}
	for i, ok := range found {
		if !ok {
			return nil, unhidra.Errorf(unhidra.ENOTFOUND, "audit: no tree node at level %d index %d", ids[i].Level, ids[i].Index)
		}
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// MaxAuditRows bounds one AuditRows answer.
const MaxAuditRows = 1000

// AuditRows implements audit.Store.
func (s *AuditStore) AuditRows(ctx context.Context, q audit.Query) ([]audit.Row, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if q.Actor != "" {
		add("actor_id = ?", q.Actor)
	}
	if q.Action != "" {
		add("action = ?", q.Action)
	}
	if q.Target != "" {
		add("target = ?", q.Target)
	}
	if q.Outcome != "" {
		add("outcome = ?", q.Outcome)
	}
	if !q.Since.IsZero() {
		add("ts >= ?", q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		add("ts < ?", q.Until.UnixNano())
	}
	if q.After >= 0 {
		add("seq > ?", q.After)
	}
	if q.Before >= 0 {
		add("seq < ?", q.Before)
	}
	limit := q.Limit
	if limit <= 0 || limit > MaxAuditRows {
		limit = MaxAuditRows
	}
	query := `SELECT seq, ts, actor_kind, actor_id, action, target, outcome, entry, leaf FROM audit_records`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	if q.Desc {
		query += " ORDER BY seq DESC"
	} else {
		query += " ORDER BY seq"
	}
	query += fmt.Sprintf(" LIMIT %d", limit)
	rows, err := s.db.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, Err(err)
	}
	defer rows.Close()
	var out []audit.Row
	for rows.Next() {
		var r audit.Row
		if err := scanAuditRow(rows, &r, true); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, Err(rows.Err())
}

// scanAuditRow reads one row; own copies the entry (otherwise it is the
// driver's buffer, valid until the next Next).
func scanAuditRow(rows *sql.Rows, r *audit.Row, own bool) error {
	var seq, ts int64
	var entry, leaf sql.RawBytes
	if err := rows.Scan(&seq, &ts, &r.ActorKind, &r.ActorID, &r.Action, &r.Target, &r.Outcome, &entry, &leaf); err != nil {
		return Err(err)
	}
	r.Seq, r.Time = uint64(seq), time.Unix(0, ts).UTC()
	if own {
		r.Entry = append([]byte(nil), entry...)
	} else {
		r.Entry = append(r.Entry[:0], entry...)
	}
	r.Leaf = merkle.Hash{}
	if len(leaf) == merkle.HashSize {
		copy(r.Leaf[:], leaf)
	} else {
		// A leaf of the wrong length cannot match any hash: Verify
		// reports the record as altered.
		r.Leaf[0] = ^merkle.LeafHash(entry)[0]
	}
	return nil
}

// AuditSnapshot implements audit.Scanner: a read transaction on one
// connection, so the three sequences see the same log.
func (s *AuditStore) AuditSnapshot(ctx context.Context, fn func(audit.Snapshot) error) error {
	tx, err := s.db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Err(err)
	}
	defer tx.Rollback()
	// A deferred read transaction takes its snapshot at its first read:
	// take it now, before any sequence starts.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_heads WHERE size < 0`).Scan(&n); err != nil {
		return Err(err)
	}
	return fn(auditSnapshot{ctx: ctx, tx: tx})
}

type auditSnapshot struct {
	ctx context.Context
	tx  *sql.Tx
}

func (s auditSnapshot) Rows(from uint64) iter.Seq2[*audit.Row, error] {
	return func(yield func(*audit.Row, error) bool) {
		rows, err := s.tx.QueryContext(s.ctx, `SELECT seq, ts, actor_kind, actor_id, action, target, outcome, entry, leaf FROM audit_records WHERE seq >= ? ORDER BY seq`, int64(from))
		if err != nil {
			yield(nil, Err(err))
			return
		}
		defer rows.Close()
		var r audit.Row
		for rows.Next() {
			if err := scanAuditRow(rows, &r, false); err != nil {
				yield(nil, err)
				return
			}
			if !yield(&r, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, Err(err))
		}
	}
}

func (s auditSnapshot) Nodes() iter.Seq2[audit.Node, error] {
	return func(yield func(audit.Node, error) bool) {
		rows, err := s.tx.QueryContext(s.ctx, `SELECT size, level, hash FROM audit_nodes ORDER BY size, level`)
		if err != nil {
			yield(audit.Node{}, Err(err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var size int64
			var level int
			var h sql.RawBytes
			if err := rows.Scan(&size, &level, &h); err != nil {
				yield(audit.Node{}, Err(err))
				return
			}
			n := audit.Node{ID: audit.NodeAt(uint64(size), uint8(level))}
			copy(n.Hash[:], h)
			if len(h) != merkle.HashSize {
				n.Hash[0] ^= 0xff // cannot match: reported as altered
			}
			if !yield(n, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(audit.Node{}, Err(err))
		}
	}
}

func (s auditSnapshot) Heads() iter.Seq2[*audit.Head, error] {
	return func(yield func(*audit.Head, error) bool) {
		rows, err := s.tx.QueryContext(s.ctx, `SELECT size, ts, root, note FROM audit_heads ORDER BY size`)
		if err != nil {
			yield(nil, Err(err))
			return
		}
		defer rows.Close()
		var h audit.Head
		for rows.Next() {
			var size, ts int64
			var root, note sql.RawBytes
			if err := rows.Scan(&size, &ts, &root, &note); err != nil {
				yield(nil, Err(err))
				return
			}
			h.Size, h.Time = uint64(size), time.Unix(0, ts).UTC()
			h.Root = merkle.Hash{}
			copy(h.Root[:], root)
			h.Note = append(h.Note[:0], note...)
			if !yield(&h, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, Err(err))
		}
	}
}
