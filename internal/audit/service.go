package audit

import (
	"context"
	"fmt"
	"strconv"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// Service answers reads of the audit log, for every transport alike:
// records by filter and page, inclusion and consistency proofs, the latest
// signed checkpoint. Every read is for admins only and is itself audited
// (ActionAuditRead), refusals included.
type Service struct {
	log *Log
	// VerifierKey is the note verifier key of the checkpoints (served so
	// auditors can check them).
	VerifierKey string
}

// NewService returns the read side of l.
func NewService(l *Log, vkey string) *Service { return &Service{log: l, VerifierKey: vkey} }

// MaxPage bounds a page of records.
const MaxPage = 500

// Page is one page of records, oldest first unless the query asked for
// newest first.
type Page struct {
	Records []Record `json:"records"`
	// Next is the After (or, newest first, the Before) of the next page;
	// -1 when there is none.
	Next int64 `json:"next"`
	// Size is the log's size when the page was read.
	Size uint64 `json:"size"`
}

// Proof is an inclusion proof (Index set) or a consistency proof (From
// set) against the tree of Size records with Root.
type Proof struct {
	Index  *uint64       `json:"index,omitempty"`
	From   *uint64       `json:"from,omitempty"`
	Size   uint64        `json:"size"`
	Leaf   *merkle.Hash  `json:"leaf_hash,omitempty"`
	Root   merkle.Hash   `json:"root"`
	Hashes []merkle.Hash `json:"proof"`
	// FromRoot is the root of the first From records (consistency).
	FromRoot *merkle.Hash `json:"from_root,omitempty"`
}

func (s *Service) admit(ctx context.Context, who unhidra.Identity, what string, details map[string]string) error {
	e := Event{Action: ActionAuditRead, Actor: who.Principal, Target: what, Details: details}
	if !who.IsAdmin() {
		e.Outcome, e.Reason = Failure, "not an admin"
		s.log.Audit(ctx, e)
		return unhidra.Errorf(unhidra.EFORBIDDEN, "the audit log is for admins only")
	}
	e.Outcome = Success
	s.log.Audit(ctx, e)
	return nil
}

// Records returns one page of the records matching q (q.Limit at most
// MaxPage; 0 means 100).
func (s *Service) Records(ctx context.Context, who unhidra.Identity, q Query) (Page, error) {
	details := map[string]string{}
	for k, v := range map[string]string{"actor": q.Actor, "action": q.Action, "target": q.Target, "outcome": q.Outcome} {
		if v != "" {
			details[k] = v
		}
	}
	if !q.Since.IsZero() {
		details["since"] = q.Since.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
	}
	if !q.Until.IsZero() {
		details["until"] = q.Until.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
	}
	if q.After >= 0 {
		details["after"] = strconv.FormatInt(q.After, 10)
	}
	if q.Before >= 0 {
		details["before"] = strconv.FormatInt(q.Before, 10)
	}
	if q.Limit < 0 || q.Limit > MaxPage {
		return Page{}, unhidra.Errorf(unhidra.EINVALID, "limit must be between 1 and %d", MaxPage)
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	size := s.log.Head().Size
	if err := s.admit(ctx, who, "records", details); err != nil {
		return Page{}, err
	}
	want := q.Limit
	q.Limit++
	rows, err := s.log.st.AuditRows(ctx, q)
	if err != nil {
		return Page{}, err
	}
	p := Page{Records: make([]Record, 0, min(len(rows), want)), Next: -1, Size: size}
	for i := range rows {
		if i == want {
			p.Next = int64(rows[i-1].Seq)
			break
		}
		r, err := DecodeRecord(rows[i].Entry)
		if err != nil {
			return Page{}, unhidra.Errorf(unhidra.EINTERNAL, "audit record %d does not decode (run `unhidra audit verify`): %v", rows[i].Seq, err)
		}
		p.Records = append(p.Records, r)
	}
	return p, nil
}

// Checkpoint returns the latest signed head as a signed note (nil when the
// log is empty).
func (s *Service) Checkpoint(ctx context.Context, who unhidra.Identity) ([]byte, error) {
	if err := s.admit(ctx, who, "checkpoint", nil); err != nil {
		return nil, err
	}
	return s.log.Head().Note, nil
}

// Key returns the verifier key of the checkpoints (VerifierKey), for
// admins, audited like every read.
func (s *Service) Key(ctx context.Context, who unhidra.Identity) (string, error) {
	if err := s.admit(ctx, who, "key", nil); err != nil {
		return "", err
	}
	return s.VerifierKey, nil
}

func (s *Service) reader(ctx context.Context) merkle.NodeReader {
	return func(ids []merkle.NodeID) ([]merkle.Hash, error) { return s.log.st.AuditNodes(ctx, ids) }
}

// sizeFor is size, or the latest head's when 0, refused beyond it.
func (s *Service) sizeFor(size uint64) (Head, uint64, error) {
	h := s.log.Head()
	if size == 0 {
		size = h.Size
	}
	if size > h.Size {
		return h, 0, unhidra.Errorf(unhidra.EINVALID, "size %d is beyond the log's %d records", size, h.Size)
	}
	return h, size, nil
}

// InclusionProof proves record index is in the tree of size records (0:
// the latest signed head's).
func (s *Service) InclusionProof(ctx context.Context, who unhidra.Identity, index, size uint64) (Proof, error) {
	if err := s.admit(ctx, who, "proof", map[string]string{"index": strconv.FormatUint(index, 10), "size": strconv.FormatUint(size, 10)}); err != nil {
		return Proof{}, err
	}
	_, size, err := s.sizeFor(size)
	if err != nil {
		return Proof{}, err
	}
	if index >= size {
		return Proof{}, unhidra.Errorf(unhidra.EINVALID, "index %d is not below size %d", index, size)
	}
	r := s.reader(ctx)
	hashes, err := merkle.InclusionProof(r, index, size)
	if err != nil {
		return Proof{}, fmt.Errorf("audit: inclusion proof: %w", err)
	}
	leaf, err := r([]merkle.NodeID{{Level: 0, Index: index}})
	if err != nil {
		return Proof{}, err
	}
	root, err := merkle.RootAt(r, size)
	if err != nil {
		return Proof{}, err
	}
	return Proof{Index: &index, Size: size, Leaf: &leaf[0], Root: root, Hashes: nonNil(hashes)}, nil
}

// ConsistencyProof proves the tree of from records is a prefix of the tree
// of size records (0: the latest signed head's).
func (s *Service) ConsistencyProof(ctx context.Context, who unhidra.Identity, from, size uint64) (Proof, error) {
	if err := s.admit(ctx, who, "proof", map[string]string{"from": strconv.FormatUint(from, 10), "size": strconv.FormatUint(size, 10)}); err != nil {
		return Proof{}, err
	}
	_, size, err := s.sizeFor(size)
	if err != nil {
		return Proof{}, err
	}
	if from == 0 || from > size {
		return Proof{}, unhidra.Errorf(unhidra.EINVALID, "from must be between 1 and size %d", size)
	}
	r := s.reader(ctx)
	hashes, err := merkle.ConsistencyProof(r, from, size)
	if err != nil {
		return Proof{}, fmt.Errorf("audit: consistency proof: %w", err)
	}
	root, err := merkle.RootAt(r, size)
	if err != nil {
		return Proof{}, err
	}
	fromRoot, err := merkle.RootAt(r, from)
	if err != nil {
		return Proof{}, err
	}
	return Proof{From: &from, Size: size, Root: root, FromRoot: &fromRoot, Hashes: nonNil(hashes)}, nil
}

func nonNil(h []merkle.Hash) []merkle.Hash {
	if h == nil {
		return []merkle.Hash{}
	}
	return h
}
