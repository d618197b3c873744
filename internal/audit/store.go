package audit

import (
	"context"
	"iter"
	"time"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// Store keeps the log (internal/sqlite; PostgreSQL later). It refuses to
// change or remove anything it holds: appends are its only write.
type Store interface {
	// AppendAudit stores a batch durably, in one transaction: its rows,
	// whose seqs follow the stored ones with no gap (anything else is a
	// conflict and stores nothing), the tree nodes they complete, and
	// the signed head of the new size.
	AppendAudit(ctx context.Context, b *Batch) error
	// AuditHead returns the latest signed head (the zero Head when the log
	// is empty).
	AuditHead(ctx context.Context) (Head, error)
	// AuditNodes returns the stored hashes of ids, in order: level 0 from
	// the records' leaf hashes, higher levels from the nodes. A missing
	// one is an ENOTFOUND error.
	AuditNodes(ctx context.Context, ids []merkle.NodeID) ([]merkle.Hash, error)
	// AuditRows returns the rows matching q in seq order (q.Desc: newest
	// first), at most q.Limit.
	AuditRows(ctx context.Context, q Query) ([]Row, error)
	Scanner
}

// Scanner reads the whole log in order, for `unhidra audit verify` and
// export: what a copy of the database answers with no server running.
type Scanner interface {
	// AuditSnapshot calls fn with one consistent view of the log (a read
	// transaction), which ends when fn returns.
	AuditSnapshot(ctx context.Context, fn func(Snapshot) error) error
}

// Snapshot is a consistent view of the log. Its sequences may be iterated
// at the same time (Verify walks all three in step); a Row and its slices
// are valid until the next iteration step.
type Snapshot interface {
	// Rows yields every row with Seq >= from in seq order.
	Rows(from uint64) iter.Seq2[*Row, error]
	// Nodes yields every stored node (level >= 1) in the order they were
	// completed: by the tree size that completed them (NodeSize), then
	// level.
	Nodes() iter.Seq2[Node, error]
	// Heads yields every signed head by size.
	Heads() iter.Seq2[*Head, error]
}

// Row is a stored record: its canonical entry and leaf hash, and the
// columns the log is searched by (copies of the entry's fields, checked
// against it by Verify).
type Row struct {
	Seq       uint64
	Time      time.Time
	ActorKind string
	ActorID   string
	Action    string
	Target    string
	Outcome   string
	Entry     []byte
	Leaf      merkle.Hash
}

// Node is a completed perfect subtree's hash.
type Node struct {
	ID   merkle.NodeID
	Hash merkle.Hash
}

// Head is a signed tree head: the log's size and root, and the signed note
// (a checkpoint) stating them.
type Head struct {
	Size uint64
	Root merkle.Hash
	Time time.Time
	Note []byte
}

// Batch is one group commit.
type Batch struct {
	Rows  []Row
	Nodes []Node
	Head  Head
}

// Query selects records. Empty fields match everything.
type Query struct {
	Actor   string // actor id
	Action  string
	Target  string
	Outcome string
	Since   time.Time // ts >= Since
	Until   time.Time // ts < Until
	// After and Before page by seq (exclusive); -1 for none.
	After, Before int64
	Desc          bool
	Limit         int
}

// NodeSize is the tree size at which node id was completed: the key the
// stores keep nodes by, so that their natural order is completion order.
func NodeSize(id merkle.NodeID) uint64 { return (id.Index + 1) << id.Level }

// NodeAt is the node of level completed at tree size size (the inverse of
// NodeSize).
func NodeAt(size uint64, level uint8) merkle.NodeID {
	return merkle.NodeID{Level: level, Index: size>>level - 1}
}
