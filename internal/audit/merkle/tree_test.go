package merkle_test

import (
	"errors"
	"math"
	"math/bits"
	"slices"
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/internal/audit/merkle"
)

func TestEdgeListsThePerfectSubtreesOfATreeLeftToRight(t *testing.T) {
	sizes := []uint64{0, 1, 2, 3, 5, 6, 7, 8, 1000, 1<<40 + 12345, math.MaxUint64 - 1, math.MaxUint64}
	for _, n := range sizes {
		ids := merkle.Edge(n)
		if len(ids) != bits.OnesCount64(n) {
			t.Errorf("Edge(%d) has %d nodes, want %d", n, len(ids), bits.OnesCount64(n))
		}
		// Contiguous from leaf 0 to leaf n, strictly decreasing levels.
		next := uint64(0)
		for i, id := range ids {
			if i > 0 && id.Level >= ids[i-1].Level {
				t.Errorf("Edge(%d)[%d] = %+v is not smaller than the one before", n, i, id)
			}
			if start := id.Index << id.Level; start != next || start>>id.Level != id.Index {
				t.Errorf("Edge(%d)[%d] = %+v starts at leaf %d, want %d", n, i, id, start, next)
			}
			next += 1 << id.Level
		}
		if next != n {
			t.Errorf("Edge(%d) covers %d leaves", n, next)
		}
	}
	if got, want := merkle.Edge(6), []merkle.NodeID{{Level: 2, Index: 0}, {Level: 1, Index: 2}}; !slices.Equal(got, want) {
		t.Errorf("Edge(6) = %v, want %v", got, want)
	}
}

// NewTree from the stored hashes of Edge(n) is the tree that n appends
// built: same size and root, and the same nodes and roots on every later
// append.
func TestNewTreeFromTheEdgeContinuesLikeTheAppendedTree(t *testing.T) {
	const more = 40
	full := newTestLog(300 + more)
	for n := uint64(0); n <= 300; n++ {
		appended := newTestLog(int(n))
		edge, err := appended.store.read(merkle.Edge(n))
		if err != nil {
			t.Fatal(err)
		}
		rebuilt, err := merkle.NewTree(n, edge)
		if err != nil {
			t.Fatalf("NewTree(%d): %v", n, err)
		}
		if rebuilt.Size() != n || rebuilt.Root() != appended.tree.Root() {
			t.Fatalf("NewTree(%d): size %d root %s, want %d %s", n, rebuilt.Size(), rebuilt.Root(), n, appended.tree.Root())
		}
		for i := n; i < n+more; i++ {
			leaf := merkle.LeafHash(leafData(int(i)))
			var gotNodes, wantNodes []merkle.NodeID
			rebuilt.Append(leaf, func(id merkle.NodeID, h merkle.Hash) {
				gotNodes = append(gotNodes, id)
				if h != full.store.nodes[id] {
					t.Fatalf("size %d+%d: node %+v = %s, want %s", n, i-n, id, h, full.store.nodes[id])
				}
			})
			appended.tree.Append(leaf, func(id merkle.NodeID, _ merkle.Hash) { wantNodes = append(wantNodes, id) })
			if !slices.Equal(gotNodes, wantNodes) {
				t.Fatalf("append of leaf %d to NewTree(%d) stored %v, appended tree %v", i, n, gotNodes, wantNodes)
			}
			if rebuilt.Size() != i+1 || rebuilt.Root() != full.roots[i+1] {
				t.Fatalf("append of leaf %d to NewTree(%d): size %d root %s, want %d %s", i, n, rebuilt.Size(), rebuilt.Root(), i+1, full.roots[i+1])
			}
		}
	}
}

func TestNewTreeRefusesTheWrongNumberOfHashes(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		hash int
	}{{0, 1}, {1, 0}, {5, 1}, {5, 3}, {math.MaxUint64, 63}} {
		_, err := merkle.NewTree(c.n, make([]merkle.Hash, c.hash))
		if unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Errorf("NewTree(%d, %d hashes) = %v, want an invalid error", c.n, c.hash, err)
		}
	}
	tr, err := merkle.NewTree(0, nil)
	if err != nil || tr.Size() != 0 || tr.Root() != merkle.EmptyRoot() {
		t.Errorf("NewTree(0, nil) = %v, %v; want the empty tree", tr, err)
	}
	var zero merkle.Tree
	if zero.Size() != 0 || zero.Root() != merkle.EmptyRoot() {
		t.Errorf("zero Tree: size %d root %s, want 0 and the empty root", zero.Size(), zero.Root())
	}
}

// Append reports each completed perfect subtree once, lowest level first:
// appending leaf s completes the nodes (L, s>>L) for L = 1 up to the number
// of trailing 1 bits of s. The nodes reported, plus the leaves, are exactly
// the nodes that RootAt, InclusionProof and ConsistencyProof read at every
// size, each proof with one NodeReader call.
func TestAppendStoresExactlyTheNodesProofsRead(t *testing.T) {
	const n = 300
	var tr merkle.Tree
	s := newMemStore()
	for i := uint64(0); i < n; i++ {
		var got []merkle.NodeID
		leaf := merkle.LeafHash(leafData(int(i)))
		s.put(merkle.NodeID{Level: 0, Index: i}, leaf)
		tr.Append(leaf, func(id merkle.NodeID, h merkle.Hash) {
			if _, dup := s.nodes[id]; dup {
				t.Errorf("node %+v reported twice", id)
			}
			s.put(id, h)
			got = append(got, id)
		})
		var want []merkle.NodeID
		for level := 1; level <= bits.TrailingZeros64(i+1); level++ {
			want = append(want, merkle.NodeID{Level: uint8(level), Index: i >> level})
		}
		if !slices.Equal(got, want) {
			t.Fatalf("append of leaf %d reported %v, want %v", i, got, want)
		}

		size := i + 1
		calls := func(what string, want int, f func() error) {
			t.Helper()
			before := s.calls
			if err := f(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got := s.calls - before; got != want {
				t.Fatalf("%s called the reader %d times, want %d", what, got, want)
			}
		}
		calls("RootAt", 1, func() error { _, err := merkle.RootAt(s.read, size); return err })
		for index := uint64(0); index < size; index++ {
			want := 1
			if size == 1 {
				want = 0
			}
			calls("InclusionProof", want, func() error { _, err := merkle.InclusionProof(s.read, index, size); return err })
		}
		for m := uint64(1); m <= size; m++ {
			want := 1
			if m == size {
				want = 0
			}
			calls("ConsistencyProof", want, func() error { _, err := merkle.ConsistencyProof(s.read, m, size); return err })
		}
	}
	for id := range s.nodes {
		if !s.asked[id] {
			t.Errorf("node %+v was stored but no proof or root read it", id)
		}
	}
	// n leaves and n - popcount(n) perfect subtrees above them.
	if want := 2*n - bits.OnesCount(n); len(s.nodes) != want {
		t.Errorf("%d nodes stored for %d leaves, want %d", len(s.nodes), n, want)
	}
}

func TestProofsRefuseBadArguments(t *testing.T) {
	l := newTestLog(10)
	r := l.store.read
	for _, c := range []struct{ index, size uint64 }{{0, 0}, {10, 10}, {11, 10}, {math.MaxUint64, math.MaxUint64}} {
		if _, err := merkle.InclusionProof(r, c.index, c.size); unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Errorf("InclusionProof(%d, %d) = %v, want an invalid error", c.index, c.size, err)
		}
		if err := merkle.VerifyInclusion(l.leaves[0], c.index, c.size, nil, l.roots[0]); unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Errorf("VerifyInclusion(%d, %d) = %v, want an invalid error", c.index, c.size, err)
		}
	}
	for _, c := range []struct{ m, n uint64 }{{0, 0}, {0, 5}, {6, 5}, {math.MaxUint64, 1}} {
		if _, err := merkle.ConsistencyProof(r, c.m, c.n); unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Errorf("ConsistencyProof(%d, %d) = %v, want an invalid error", c.m, c.n, err)
		}
		if err := merkle.VerifyConsistency(c.m, c.n, l.roots[0], l.roots[0], nil); unhidra.ErrorCode(err) != unhidra.EINVALID {
			t.Errorf("VerifyConsistency(%d, %d) = %v, want an invalid error", c.m, c.n, err)
		}
	}
	// A size beyond what is stored: the reader's error comes back wrapped.
	if _, err := merkle.InclusionProof(r, 3, 11); err == nil {
		t.Error("InclusionProof over a node never stored succeeded")
	}
	boom := errors.New("disk on fire")
	failing := func([]merkle.NodeID) ([]merkle.Hash, error) { return nil, boom }
	if _, err := merkle.RootAt(failing, 5); !errors.Is(err, boom) {
		t.Errorf("RootAt with a failing reader = %v, want it to wrap %v", err, boom)
	}
	if _, err := merkle.ConsistencyProof(failing, 3, 5); !errors.Is(err, boom) {
		t.Errorf("ConsistencyProof with a failing reader = %v, want it to wrap %v", err, boom)
	}
	short := func(ids []merkle.NodeID) ([]merkle.Hash, error) { return make([]merkle.Hash, len(ids)-1), nil }
	if _, err := merkle.InclusionProof(short, 3, 5); err == nil {
		t.Error("InclusionProof accepted a reader that answered one hash short")
	}
	if _, err := merkle.RootAt(nil, 5); err == nil {
		t.Error("RootAt with a nil reader succeeded")
	}
	if got, err := merkle.RootAt(nil, 0); err != nil || got != merkle.EmptyRoot() {
		t.Errorf("RootAt(0) = %s, %v; want the empty root without a read", got, err)
	}
}

// At the largest sizes the proofs have the right length and verify against
// the root they imply, with no overflow: the tree of up to 2^64-1 equal
// leaves, whose perfect subtrees of one level all have the same hash.
func TestHugeSizesDoNotOverflow(t *testing.T) {
	var level [64]merkle.Hash
	level[0] = merkle.LeafHash(nil)
	for i := 1; i < len(level); i++ {
		level[i] = merkle.NodeHash(level[i-1], level[i-1])
	}
	same := func(ids []merkle.NodeID) ([]merkle.Hash, error) {
		out := make([]merkle.Hash, len(ids))
		for i, id := range ids {
			if id.Level > 63 || id.Index > (math.MaxUint64>>id.Level)-1 {
				t.Errorf("asked for node %+v outside a tree of 2^64-1 leaves", id)
				continue
			}
			out[i] = level[id.Level]
		}
		return out, nil
	}
	const max = uint64(math.MaxUint64)
	for _, size := range []uint64{max, max - 1, 1 << 63, 1<<63 + 1} {
		root, err := merkle.RootAt(same, size)
		if err != nil {
			t.Fatal(err)
		}
		for _, index := range []uint64{0, 1, size / 2, size - 2, size - 1} {
			p, err := merkle.InclusionProof(same, index, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", index, size, err)
			}
			if err := merkle.VerifyInclusion(level[0], index, size, p, root); err != nil {
				t.Errorf("VerifyInclusion(%d, %d): %v", index, size, err)
			}
		}
		for _, m := range []uint64{1, 2, 3, size / 2, size - 1, size} {
			rootM, err := merkle.RootAt(same, m)
			if err != nil {
				t.Fatal(err)
			}
			p, err := merkle.ConsistencyProof(same, m, size)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", m, size, err)
			}
			if err := merkle.VerifyConsistency(m, size, rootM, root, p); err != nil {
				t.Errorf("VerifyConsistency(%d, %d): %v", m, size, err)
			}
		}
	}
}
