package merkle

import (
	"math"
	"math/bits"

	"github.com/unhidra/unhidra"
)

// Tree is the right edge (compact range) of a tree of Size leaves: the
// hashes of the perfect subtrees of Edge(Size), enough to append and to
// compute the root with no reads. The zero value is the empty tree.
type Tree struct {
	size uint64
	edge []Hash // the hashes of Edge(size), left to right
}

// Size returns the number of leaves.
func (t *Tree) Size() uint64 { return t.size }

// Root returns the Merkle Tree Hash of the tree (EmptyRoot() for size 0).
func (t *Tree) Root() Hash { return fold(t.edge) }

// Append adds one leaf hash and calls store (when non-nil) for every
// perfect-subtree node it completes, Level >= 1, from the lowest level up
// (the leaf itself is not passed). A tree of 2^64-1 leaves is full: Append
// on it panics.
func (t *Tree) Append(leaf Hash, store func(NodeID, Hash)) {
	if t.size == math.MaxUint64 {
		panic("merkle: Append to a full tree")
	}
	h := leaf
	// Each trailing 1 bit of the size is a perfect subtree on the edge that
	// the new leaf completes into one twice its size.
	level := uint8(0)
	for s := t.size; s&1 == 1; s >>= 1 {
		level++
		last := len(t.edge) - 1
		h = NodeHash(t.edge[last], h)
		t.edge = t.edge[:last]
		if store != nil {
			store(NodeID{Level: level, Index: t.size >> level}, h)
		}
	}
	t.edge = append(t.edge, h)
	t.size++
}

// Edge returns the NodeIDs of the perfect subtrees whose hashes make up a
// tree of size n, left to right (largest first): what NewTree needs. It is
// empty for n == 0.
func Edge(n uint64) []NodeID { return appendRange(nil, 0, n) }

// NewTree rebuilds the Tree of size n from the hashes of Edge(n) in that
// order (an error if the count is wrong).
func NewTree(n uint64, edge []Hash) (*Tree, error) {
	if want := bits.OnesCount64(n); len(edge) != want {
		return nil, unhidra.Errorf(unhidra.EINVALID, "merkle: a tree of size %d has %d edge hashes, got %d", n, want, len(edge))
	}
	return &Tree{size: n, edge: append([]Hash(nil), edge...)}, nil
}

// appendRange appends the NodeIDs of the perfect subtrees that make up the
// leaves [a, b), left to right, largest first. It requires a to be a
// multiple of the smallest power of two >= b-a, which holds for every range
// the RFC 6962 recursion visits; fold of their hashes is then MTH(D[a:b]).
func appendRange(ids []NodeID, a, b uint64) []NodeID {
	for n := b - a; n != 0; {
		level := uint8(bits.Len64(n) - 1)
		ids = append(ids, NodeID{Level: level, Index: a >> level})
		a += 1 << level
		n &^= 1 << level
	}
	return ids
}

// fold returns the Merkle Tree Hash of the range whose perfect subtrees
// (from appendRange) have the hashes hs: the RFC 6962 recursion splits at
// the largest power of two below the size, which is always the leftmost
// subtree, so the hashes fold from the right.
func fold(hs []Hash) Hash {
	if len(hs) == 0 {
		return EmptyRoot()
	}
	h := hs[len(hs)-1]
	for i := len(hs) - 2; i >= 0; i-- {
		h = NodeHash(hs[i], h)
	}
	return h
}
