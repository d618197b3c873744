package audit

import (
	"context"
	"fmt"
	"iter"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// Problem kinds, in the order Verify looks for them.
const (
	ProblemMissing    = "missing"    // a record is missing from the sequence
	ProblemRecord     = "record"     // a record's content, hash or columns were altered
	ProblemNodes      = "nodes"      // the stored tree nodes disagree with the records
	ProblemHead       = "head"       // records disagree with a signed head, or a head is forged
	ProblemUnsigned   = "unsigned"   // records no signed head covers (forged at the end)
	ProblemTruncated  = "truncated"  // records a signed head covers are gone from the end
	ProblemRollback   = "rollback"   // the log is older than, or diverges from, a checkpoint
	ProblemCheckpoint = "checkpoint" // the checkpoint given is not validly signed
)

// Problem is the first thing Verify found wrong, located: the first bad
// record is Seq; when it can only be narrowed to a range, Last is the
// range's end (otherwise Last == Seq). Seq is -1 when no record is at
// fault (a bad checkpoint file).
type Problem struct {
	Kind      string
	Seq, Last int64
	Msg       string
}

func (p *Problem) Error() string { return p.Msg }

// Report is what Verify found.
type Report struct {
	// Records is the number of records read; Root the tree's root over
	// them.
	Records uint64
	Root    merkle.Hash
	Heads   int
	Nodes   int
	// Last is the last signed head; Checkpoint the checkpoint verified
	// against, if one was given.
	Last       *Checkpoint
	Checkpoint *Checkpoint
	// Problem is nil when the log is intact.
	Problem *Problem
	Elapsed time.Duration
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Verifiers are the keys heads and checkpoints must be signed with.
	Verifiers note.Verifiers
	// Checkpoint, when set, is a signed checkpoint kept outside the
	// database (the data dir's, or one an auditor saved): the log must
	// contain it (not be truncated or rolled back before it) and extend it.
	Checkpoint []byte
}

// entryFields are the fields of an entry Verify checks the searchable
// columns against.
type entryFields struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"ts"`
	Actor   Actor     `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Outcome string    `json:"outcome"`
}

// Verify recomputes the whole log from its records: every record's hash
// and place, the columns it is searched by, every stored tree node, every
// signed head's root, the last head's signature, and, when given, the
// external checkpoint. It stops at the first problem, located. An error is
// returned only when the log could not be read.
func Verify(ctx context.Context, sc Scanner, o VerifyOptions) (*Report, error) {
	start := time.Now()
	rep := &Report{}
	var ext *Checkpoint
	if o.Checkpoint != nil {
		cp, err := OpenCheckpoint(o.Checkpoint, o.Verifiers)
		if err != nil {
			rep.Problem = &Problem{Kind: ProblemCheckpoint, Seq: -1, Last: -1, Msg: "the checkpoint does not verify: " + err.Error()}
			return rep, nil
		}
		ext = &cp
		rep.Checkpoint = ext
	}
	err := sc.AuditSnapshot(ctx, func(s Snapshot) error {
		v := verifier{rep: rep, ext: ext, snap: s, o: o}
		return v.run()
	})
	rep.Elapsed = time.Since(start)
	if err != nil {
		return nil, err
	}
	return rep, nil
}

type verifier struct {
	rep  *Report
	ext  *Checkpoint
	snap Snapshot
	o    VerifyOptions

	tree      merkle.Tree
	nextNode  func() (Node, error, bool)
	nodeBad   *Problem
	extRoot   *merkle.Hash
	lastHead  *Head
	prevSize  uint64 // size of the last head matched
	headCount int
}

func (v *verifier) fail(kind string, seq, last int64, format string, args ...any) error {
	v.rep.Problem = &Problem{Kind: kind, Seq: seq, Last: last, Msg: fmt.Sprintf(format, args...)}
	return errStop
}

type stopError struct{}

func (stopError) Error() string { return "stop" }

var errStop error = stopError{}

func (v *verifier) run() error {
	nextNode, stopNodes := iter.Pull2(v.snap.Nodes())
	defer stopNodes()
	v.nextNode = nextNode
	nextHead, stopHeads := iter.Pull2(v.snap.Heads())
	defer stopHeads()
	head, err, more := nextHead()
	if err != nil {
		return err
	}
	if !more {
		head = nil
	}
	var fe entryFields
	var expect uint64
	err = func() error {
		for row, err := range v.snap.Rows(0) {
			if err != nil {
				return err
			}
			seq := int64(expect)
			if row.Seq != expect {
				return v.fail(ProblemMissing, seq, seq, "record %d is missing (the next one stored is %d): deleted", expect, row.Seq)
			}
			if merkle.LeafHash(row.Entry) != row.Leaf {
				return v.fail(ProblemRecord, seq, seq, "record %d: its content does not match its stored hash: altered", expect)
			}
			fe = entryFields{}
			if err := parseEntry(row.Entry, row, &fe); err != nil {
				return v.fail(ProblemRecord, seq, seq, "record %d: not a valid entry: %v", expect, err)
			}
			if fe.Seq != row.Seq {
				return v.fail(ProblemRecord, seq, seq, "record %d holds the entry of record %d: moved or swapped", expect, fe.Seq)
			}
			if col := columnDiff(row, &fe); col != "" {
				return v.fail(ProblemRecord, seq, seq, "record %d: its %s column differs from its entry: altered", expect, col)
			}
			v.tree.Append(row.Leaf, v.checkNode)
			expect++
			for head != nil && head.Size <= expect {
				if err := v.checkHead(head, expect); err != nil {
					return err
				}
				if head, err, more = nextHead(); err != nil {
					return err
				} else if !more {
					head = nil
				}
			}
			if v.ext != nil && v.ext.Size == expect {
				r := v.tree.Root()
				v.extRoot = &r
			}
		}
		return nil
	}()
	v.rep.Records = expect
	v.rep.Root = v.tree.Root()
	v.rep.Heads = v.headCount
	if err != nil {
		return stopOK(err)
	}
	n := int64(expect)
	if head != nil {
		return stopOK(v.fail(ProblemTruncated, n, int64(head.Size)-1, "a signed head covers %d records, but only %d are stored (records %d onwards were removed)", head.Size, expect, expect))
	}
	if v.nodeBad != nil {
		v.rep.Problem = v.nodeBad
		return nil
	}
	if _, err, more := v.nextNode(); err != nil {
		return err
	} else if more {
		return stopOK(v.fail(ProblemNodes, n, n, "the stored tree has nodes beyond its %d records", expect))
	}
	if expect > v.prevSize {
		return stopOK(v.fail(ProblemUnsigned, int64(v.prevSize), n-1, "records %d..%d are not covered by any signed head: forged, or written outside the server", v.prevSize, expect-1))
	}
	if v.lastHead != nil {
		cp, err := OpenCheckpoint(v.lastHead.Note, v.o.Verifiers)
		if err != nil {
			return stopOK(v.firstForgedHead(err))
		}
		v.rep.Last = &cp
	}
	if v.ext != nil {
		switch {
		case v.ext.Size > expect:
			kind, what := ProblemRollback, "rolled back: the database is an older copy"
			return stopOK(v.fail(kind, n, int64(v.ext.Size)-1, "%s: the checkpoint signed %s covers %d records, the log holds %d", what, v.ext.Time.Format(time.RFC3339), v.ext.Size, expect))
		case v.ext.Size > 0 && (v.extRoot == nil || *v.extRoot != v.ext.Root):
			return stopOK(v.fail(ProblemRollback, -1, -1, "the log does not extend the checkpoint of %d records signed %s: rolled back and rewritten", v.ext.Size, v.ext.Time.Format(time.RFC3339)))
		}
	}
	return nil
}

// stopOK turns the verifier's stop into success (the problem is in the
// report); other errors stay.
func stopOK(err error) error {
	if err == errStop {
		return nil
	}
	return err
}

func columnDiff(r *Row, fe *entryFields) string {
	switch {
	case !r.Time.Equal(fe.Time):
		return "ts"
	case r.ActorKind != fe.Actor.Kind:
		return "actor_kind"
	case r.ActorID != fe.Actor.ID:
		return "actor_id"
	case r.Action != fe.Action:
		return "action"
	case r.Target != fe.Target:
		return "target"
	case r.Outcome != fe.Outcome:
		return "outcome"
	}
	return ""
}

// checkNode compares a node the recomputation completed with the next
// stored one. The first difference is kept: it locates an alteration
// whose hashes were recomputed to the records under the node.
func (v *verifier) checkNode(id merkle.NodeID, h merkle.Hash) {
	if v.nodeBad != nil {
		return
	}
	first, last := int64(id.Index<<id.Level), int64((id.Index+1)<<id.Level)-1
	n, err, more := v.nextNode()
	switch {
	case err != nil:
		v.nodeBad = &Problem{Kind: ProblemNodes, Seq: first, Last: last, Msg: "reading the tree nodes: " + err.Error()}
	case !more || n.ID != id:
		v.nodeBad = &Problem{Kind: ProblemNodes, Seq: first, Last: last, Msg: fmt.Sprintf("the stored tree lacks the node over records %d..%d: removed", first, last)}
	case n.Hash != h:
		v.nodeBad = &Problem{Kind: ProblemNodes, Seq: first, Last: last, Msg: fmt.Sprintf("records %d..%d do not match their stored tree node: one of them was altered", first, last)}
	default:
		v.rep.Nodes++
	}
}

// checkHead compares a signed head with the tree recomputed to size.
func (v *verifier) checkHead(h *Head, size uint64) error {
	v.headCount++
	first, last := int64(v.prevSize), int64(h.Size)-1
	if h.Size < size {
		return v.fail(ProblemHead, last, last, "a signed head of size %d is out of order", h.Size)
	}
	text, ok := noteText(h.Note)
	cp, err := ParseCheckpoint(text)
	if !ok || err != nil || cp.Size != h.Size {
		return v.fail(ProblemHead, first, last, "the signed head of size %d is not a checkpoint of that size: altered", h.Size)
	}
	if cp.Root != v.tree.Root() {
		// The records or the head: the head's signature decides which.
		if _, err := OpenCheckpoint(h.Note, v.o.Verifiers); err != nil {
			return v.fail(ProblemHead, first, last, "the signed head of size %d does not verify (%v): forged", h.Size, err)
		}
		if v.nodeBad != nil && v.nodeBad.Seq >= first {
			v.rep.Problem = v.nodeBad
			return errStop
		}
		return v.fail(ProblemHead, first, last, "records %d..%d do not match the signed head of size %d: one of them was altered (its hashes recomputed)", first, last, h.Size)
	}
	if h.Root != cp.Root {
		return v.fail(ProblemHead, first, last, "the root column of the signed head of size %d differs from what it signed: altered", h.Size)
	}
	hc := *h
	hc.Note = append([]byte(nil), h.Note...)
	v.lastHead = &hc
	v.prevSize = h.Size
	return nil
}

// firstForgedHead finds the first head whose signature fails, once the
// last one failed: only then is every head's signature checked.
func (v *verifier) firstForgedHead(lastErr error) error {
	var found *Head
	var ferr error
	var prev uint64
	for h, err := range v.snap.Heads() {
		if err != nil {
			return err
		}
		if _, err := OpenCheckpoint(h.Note, v.o.Verifiers); err != nil {
			hc := *h
			found, ferr = &hc, err
			break
		}
		prev = h.Size
	}
	if found == nil {
		return v.fail(ProblemHead, int64(v.lastHead.Size)-1, int64(v.lastHead.Size)-1, "the last signed head does not verify: %v", lastErr)
	}
	return v.fail(ProblemHead, int64(prev), int64(found.Size)-1, "the signed head of size %d does not verify (%v): records %d..%d are not vouched for", found.Size, ferr, prev, found.Size-1)
}
