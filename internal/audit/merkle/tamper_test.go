package merkle_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// tamperings returns every proof one edit away from p: each hash with one
// bit flipped, each hash dropped, and a foreign hash inserted at each
// position.
func tamperings(p []merkle.Hash, foreign merkle.Hash) map[string][]merkle.Hash {
	out := map[string][]merkle.Hash{}
	for i := range p {
		q := slices.Clone(p)
		q[i][i%merkle.HashSize] ^= 0x10
		out[fmt.Sprintf("hash %d changed", i)] = q
		out[fmt.Sprintf("hash %d dropped", i)] = slices.Delete(slices.Clone(p), i, i+1)
	}
	for i := 0; i <= len(p); i++ {
		out[fmt.Sprintf("hash added at %d", i)] = slices.Insert(slices.Clone(p), i, foreign)
	}
	return out
}

// Up to size 33, every inclusion proof fails once one hash is changed,
// dropped or added, and for any other index, for any other size (checked
// against that size's root), for another leaf and for another root.
//
// A size alone, checked against the root of another size, is not always
// refused: RFC 6962 binds a size to a root only through the signed
// checkpoint (the proof of leaf 0 in size 3 also verifies as size 4 against
// the root of size 3), so callers take both from the same checkpoint.
func TestTamperedInclusionProofsFail(t *testing.T) {
	const maxSize = 33
	l := newTestLog(maxSize)
	foreign := merkle.LeafHash([]byte("not in the log"))
	for size := uint64(1); size <= maxSize; size++ {
		root := l.roots[size]
		for index := uint64(0); index < size; index++ {
			leaf := l.leaves[index]
			p, err := merkle.InclusionProof(l.store.read, index, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := merkle.VerifyInclusion(leaf, index, size, p, root); err != nil {
				t.Fatalf("genuine proof of leaf %d in size %d: %v", index, size, err)
			}
			fails := func(what string, leaf merkle.Hash, index, size uint64, p []merkle.Hash, root merkle.Hash) {
				t.Helper()
				if merkle.VerifyInclusion(leaf, index, size, p, root) == nil {
					t.Errorf("proof of leaf %d in size %d verified with %s", index, size, what)
				}
			}
			for what, q := range tamperings(p, foreign) {
				fails(what, leaf, index, size, q, root)
			}
			fails("the foreign hash added", leaf, index, size, append(slices.Clone(p), root), root)
			for other := uint64(0); other < maxSize; other++ {
				if other != index {
					fails(fmt.Sprintf("index %d", other), leaf, other, size, p, root)
					fails(fmt.Sprintf("leaf %d", other), l.leaves[other], index, size, p, root)
				}
			}
			for other := uint64(0); other <= maxSize+1; other++ {
				if other != size {
					otherRoot := foreign
					if other <= maxSize {
						otherRoot = l.roots[other]
					}
					fails(fmt.Sprintf("size %d and its root", other), leaf, index, other, p, otherRoot)
					fails(fmt.Sprintf("the root of size %d", other), leaf, index, size, p, otherRoot)
				}
			}
		}
	}
}

// Up to size 33, every consistency proof fails once one hash is changed,
// dropped or added, for any other old size (with its root or with the
// genuine one), for any other new size (checked against that size's root),
// for swapped roots and for any other root.
func TestTamperedConsistencyProofsFail(t *testing.T) {
	const maxSize = 33
	l := newTestLog(maxSize)
	foreign := merkle.LeafHash([]byte("not in the log"))
	for n := uint64(1); n <= maxSize; n++ {
		for m := uint64(1); m <= n; m++ {
			rootM, rootN := l.roots[m], l.roots[n]
			p, err := merkle.ConsistencyProof(l.store.read, m, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := merkle.VerifyConsistency(m, n, rootM, rootN, p); err != nil {
				t.Fatalf("genuine proof from %d to %d: %v", m, n, err)
			}
			fails := func(what string, m, n uint64, rootM, rootN merkle.Hash, p []merkle.Hash) {
				t.Helper()
				if merkle.VerifyConsistency(m, n, rootM, rootN, p) == nil {
					t.Errorf("proof from %d to %d verified with %s", m, n, what)
				}
			}
			for what, q := range tamperings(p, foreign) {
				fails(what, m, n, rootM, rootN, q)
			}
			fails("the new root added", m, n, rootM, rootN, append(slices.Clone(p), rootN))
			if m != n {
				fails("swapped roots", m, n, rootN, rootM, p)
			}
			for other := uint64(0); other <= maxSize+1; other++ {
				otherRoot := foreign
				if other <= maxSize {
					otherRoot = l.roots[other]
				}
				if other != m {
					fails(fmt.Sprintf("old size %d and its root", other), other, n, otherRoot, rootN, p)
					fails(fmt.Sprintf("old size %d", other), other, n, rootM, rootN, p)
					fails(fmt.Sprintf("the root of size %d as the old root", other), m, n, otherRoot, rootN, p)
				}
				if other != n {
					fails(fmt.Sprintf("new size %d and its root", other), m, other, rootM, otherRoot, p)
					fails(fmt.Sprintf("the root of size %d as the new root", other), m, n, rootM, otherRoot, p)
				}
			}
		}
	}
}

// A refused proof says why: its length, the root it leads to, or which of
// the two roots of a consistency proof does not match.
func TestVerifyErrorsNameWhatFailed(t *testing.T) {
	l := newTestLog(8)
	incl, err := merkle.InclusionProof(l.store.read, 5, 8)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := merkle.ConsistencyProof(l.store.read, 6, 8)
	if err != nil {
		t.Fatal(err)
	}
	other := l.roots[7]
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"a short inclusion proof", merkle.VerifyInclusion(l.leaves[5], 5, 8, incl[:2], l.roots[8]), "has 2 hashes, want 3"},
		{"a wrong leaf", merkle.VerifyInclusion(l.leaves[4], 5, 8, incl, l.roots[8]), "leads to root"},
		{"an index out of range", merkle.VerifyInclusion(l.leaves[5], 8, 8, incl, l.roots[8]), "index out of range"},
		{"a long consistency proof", merkle.VerifyConsistency(6, 8, l.roots[6], l.roots[8], append(cons, other)), "has 4 hashes, want 3"},
		{"a wrong old root", merkle.VerifyConsistency(6, 8, other, l.roots[8], cons), "old root"},
		{"a wrong new root", merkle.VerifyConsistency(6, 8, l.roots[6], other, cons), "new root"},
		{"an old size above the new", merkle.VerifyConsistency(9, 8, l.roots[6], l.roots[8], cons), "want 0 < m <= n"},
		{"equal sizes with different roots", merkle.VerifyConsistency(8, 8, other, l.roots[8], nil), "differ"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, c.err, c.want)
		}
	}
}
