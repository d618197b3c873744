package merkle

import (
	"fmt"
	"math/bits"
	"slices"

	"github.com/unhidra/unhidra"
)

// NodeReader returns stored perfect-subtree hashes (level 0 = leaf hashes),
// one for each id, in order. Each proof calls it once with all the ids it
// needs, so a database can answer with one query; it is not called when a
// proof needs no node.
type NodeReader func(ids []NodeID) ([]Hash, error)

// span is the leaf range [a, b) of one proof element, MTH(D[a:b]).
type span struct{ a, b uint64 }

// split is k of RFC 6962 §2.1: the largest power of two smaller than n (n >= 2).
func split(n uint64) uint64 { return 1 << (bits.Len64(n-1) - 1) }

// RootAt is MTH(D[0:size]) computed from stored nodes: the Edge(size)
// perfect subtrees, O(log size) of them. It is EmptyRoot() for size 0.
func RootAt(r NodeReader, size uint64) (Hash, error) {
	if size == 0 {
		return EmptyRoot(), nil
	}
	hs, err := read(r, Edge(size))
	if err != nil {
		return Hash{}, fmt.Errorf("merkle: root of size %d: %w", size, err)
	}
	return fold(hs), nil
}

// InclusionProof is PATH(index, D[0:size]) of RFC 6962 §2.1.1 (index < size):
// the audit path of the leaf, deepest sibling first.
func InclusionProof(r NodeReader, index, size uint64) ([]Hash, error) {
	if index >= size {
		return nil, unhidra.Errorf(unhidra.EINVALID, "merkle: inclusion proof for leaf %d in a tree of size %d: index out of range", index, size)
	}
	p, err := build(r, inclusionSpans(index, size))
	if err != nil {
		return nil, fmt.Errorf("merkle: inclusion proof for leaf %d in a tree of size %d: %w", index, size, err)
	}
	return p, nil
}

// ConsistencyProof is PROOF(m, D[0:n]) of RFC 6962 §2.1.2 (0 < m <= n;
// m == n gives an empty proof).
func ConsistencyProof(r NodeReader, m, n uint64) ([]Hash, error) {
	if m == 0 || m > n {
		return nil, unhidra.Errorf(unhidra.EINVALID, "merkle: consistency proof from size %d to size %d: want 0 < m <= n", m, n)
	}
	p, err := build(r, consistencySpans(m, n))
	if err != nil {
		return nil, fmt.Errorf("merkle: consistency proof from size %d to size %d: %w", m, n, err)
	}
	return p, nil
}

// inclusionSpans follows the recursion of PATH(index, D[0:size]) down to the
// leaf and returns the ranges of its elements in proof order.
func inclusionSpans(index, size uint64) []span {
	var out []span
	a, b := uint64(0), size
	for b-a > 1 {
		k := a + split(b-a)
		if index < k {
			out = append(out, span{k, b})
			b = k
		} else {
			out = append(out, span{a, k})
			a = k
		}
	}
	// The recursion appends each sibling after the path below it.
	slices.Reverse(out)
	return out
}

// consistencySpans follows SUBPROOF(m, D[0:n], true) and returns the ranges
// of its elements in proof order. m stays the absolute size of the old
// tree; the invariant is a < m <= b.
func consistencySpans(m, n uint64) []span {
	var out []span
	a, b := uint64(0), n
	whole := true // the b flag of SUBPROOF: [a, b) is the whole old tree
	for m != b {
		k := a + split(b-a)
		if m <= k {
			out = append(out, span{k, b})
			b = k
		} else {
			out = append(out, span{a, k})
			a = k
			whole = false
		}
	}
	if !whole {
		out = append(out, span{a, b})
	}
	slices.Reverse(out)
	return out
}

// build reads the stored nodes of every span with one NodeReader call and
// folds each span into its proof element.
func build(r NodeReader, spans []span) ([]Hash, error) {
	if len(spans) == 0 {
		return []Hash{}, nil
	}
	var ids []NodeID
	ends := make([]int, len(spans))
	for i, s := range spans {
		ids = appendRange(ids, s.a, s.b)
		ends[i] = len(ids)
	}
	hs, err := read(r, ids)
	if err != nil {
		return nil, err
	}
	proof := make([]Hash, len(spans))
	start := 0
	for i, end := range ends {
		proof[i] = fold(hs[start:end])
		start = end
	}
	return proof, nil
}

// read calls r once and checks that it answered every id.
func read(r NodeReader, ids []NodeID) ([]Hash, error) {
	if r == nil {
		return nil, fmt.Errorf("no node reader")
	}
	hs, err := r(ids)
	if err != nil {
		return nil, fmt.Errorf("reading %d nodes: %w", len(ids), err)
	}
	if len(hs) != len(ids) {
		return nil, fmt.Errorf("node reader returned %d hashes for %d nodes", len(hs), len(ids))
	}
	return hs, nil
}
