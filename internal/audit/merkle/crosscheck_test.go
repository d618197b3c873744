package merkle_test

import (
	"bytes"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// refLog is the same log kept by github.com/transparency-dev/merkle: a
// compact range and the nodes its visitor reports.
type refLog struct {
	rng   *compact.Range
	nodes map[compact.NodeID][]byte
}

func newRefLog() *refLog {
	f := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	return &refLog{rng: f.NewEmptyRange(0), nodes: map[compact.NodeID][]byte{}}
}

func (r *refLog) add(t *testing.T, data []byte) {
	err := r.rng.Append(rfc6962.DefaultHasher.HashLeaf(data), func(id compact.NodeID, h []byte) {
		r.nodes[id] = h
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (r *refLog) root(t *testing.T) []byte {
	h, err := r.rng.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fetch resolves the library's proof recipe from its own nodes.
func (r *refLog) fetch(t *testing.T, n proof.Nodes) [][]byte {
	t.Helper()
	hs := make([][]byte, len(n.IDs))
	for i, id := range n.IDs {
		h, ok := r.nodes[id]
		if !ok {
			t.Fatalf("library proof needs node %+v the library never stored", id)
		}
		hs[i] = h
	}
	p, err := n.Rehash(hs, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func toBytes(hs []merkle.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func fromBytes(t *testing.T, bs [][]byte) []merkle.Hash {
	t.Helper()
	out := make([]merkle.Hash, len(bs))
	for i, b := range bs {
		if len(b) != merkle.HashSize {
			t.Fatalf("library hash of %d bytes", len(b))
		}
		out[i] = merkle.Hash(b)
	}
	return out
}

// sample returns the values of 0..n-1 to test at size n: all of them up to
// 64, otherwise the ends, the middle, the powers of two around and a few
// random ones.
func sample(rnd *rand.Rand, n uint64) []uint64 {
	if n <= 64 {
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(i)
		}
		return out
	}
	p := uint64(1) << (bits.Len64(n-1) - 1)
	out := []uint64{0, 1, n / 2, p - 1, p, n - 2, n - 1}
	for range 5 {
		out = append(out, rnd.Uint64N(n))
	}
	return out
}

// For every size 1..1,000 the roots, the inclusion proofs and the
// consistency proofs equal those of github.com/transparency-dev/merkle, each
// verifies with the other's verifier, and both implementations store the
// same nodes.
func TestAgreesWithTransparencyDevMerkle(t *testing.T) {
	const maxSize = 1000
	hasher := rfc6962.DefaultHasher
	rnd := rand.New(rand.NewPCG(6962, 9162))
	ours, ref := newTestLog(0), newRefLog()
	var inclusions, consistencies int
	for size := uint64(1); size <= maxSize; size++ {
		data := leafData(int(size - 1))
		ours.add(merkle.LeafHash(data))
		ref.add(t, data)

		root := ours.roots[size]
		if want := ref.root(t); !bytes.Equal(root[:], want) {
			t.Fatalf("size %d: Tree.Root() = %s, library root %x", size, root, want)
		}
		if got, err := merkle.RootAt(ours.store.read, size); err != nil || got != root {
			t.Fatalf("size %d: RootAt = %s, %v; want %s", size, got, err, root)
		}

		for _, index := range sample(rnd, size) {
			inclusions++
			got, err := merkle.InclusionProof(ours.store.read, index, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", index, size, err)
			}
			nodes, err := proof.Inclusion(index, size)
			if err != nil {
				t.Fatal(err)
			}
			want := fromBytes(t, ref.fetch(t, nodes))
			if !slices.Equal(got, want) {
				t.Fatalf("InclusionProof(%d, %d) = %v, library %v", index, size, got, want)
			}
			leaf := ours.leaves[index]
			if err := proof.VerifyInclusion(hasher, index, size, leaf[:], toBytes(got), root[:]); err != nil {
				t.Fatalf("library rejects our inclusion proof (%d, %d): %v", index, size, err)
			}
			if err := merkle.VerifyInclusion(leaf, index, size, want, root); err != nil {
				t.Fatalf("we reject the library's inclusion proof (%d, %d): %v", index, size, err)
			}
		}

		for _, m0 := range sample(rnd, size) {
			m := m0 + 1 // 1..size
			consistencies++
			got, err := merkle.ConsistencyProof(ours.store.read, m, size)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", m, size, err)
			}
			nodes, err := proof.Consistency(m, size)
			if err != nil {
				t.Fatal(err)
			}
			want := fromBytes(t, ref.fetch(t, nodes))
			if !slices.Equal(got, want) {
				t.Fatalf("ConsistencyProof(%d, %d) = %v, library %v", m, size, got, want)
			}
			rootM := ours.roots[m]
			if err := proof.VerifyConsistency(hasher, m, size, toBytes(got), rootM[:], root[:]); err != nil {
				t.Fatalf("library rejects our consistency proof (%d, %d): %v", m, size, err)
			}
			if err := merkle.VerifyConsistency(m, size, rootM, root, want); err != nil {
				t.Fatalf("we reject the library's consistency proof (%d, %d): %v", m, size, err)
			}
		}
	}

	// Our store is the library's, leaves included.
	if len(ours.store.nodes) != len(ref.nodes) {
		t.Errorf("we stored %d nodes, the library %d", len(ours.store.nodes), len(ref.nodes))
	}
	for id, h := range ref.nodes {
		got, ok := ours.store.nodes[merkle.NodeID{Level: uint8(id.Level), Index: id.Index}]
		if !ok || !bytes.Equal(got[:], h) {
			t.Errorf("node %+v: ours %s (stored %v), library %x", id, got, ok, h)
		}
	}
	t.Logf("%d inclusion and %d consistency proofs compared", inclusions, consistencies)
}
