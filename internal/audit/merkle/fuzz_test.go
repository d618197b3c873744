package merkle_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// The fuzz targets check proofs against a fixed log of 37 leaves: whatever
// the index, sizes and proof bytes, the verifiers never panic, and whenever
// a proof verifies against the log's real roots it is the genuine proof.

const fuzzLogSize = 37

// hashesOf splits b into whole hashes (a trailing partial one is dropped).
func hashesOf(b []byte) []merkle.Hash {
	out := make([]merkle.Hash, 0, len(b)/merkle.HashSize)
	for ; len(b) >= merkle.HashSize; b = b[merkle.HashSize:] {
		out = append(out, merkle.Hash(b[:merkle.HashSize]))
	}
	return out
}

func bytesOf(hs ...merkle.Hash) []byte {
	var out []byte
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	return out
}

// fuzzRoot is the log's root at size, or for a size it never had a
// stand-in that no proof can reach.
func fuzzRoot(l *testLog, size uint64) merkle.Hash {
	if size <= fuzzLogSize {
		return l.roots[size]
	}
	return merkle.LeafHash(fmt.Appendf(nil, "no root for size %d", size))
}

// The data is the leaf hash followed by the proof.
func FuzzVerifyInclusion(f *testing.F) {
	l := newTestLog(fuzzLogSize)
	for size := uint64(1); size <= fuzzLogSize; size += 3 {
		for _, index := range []uint64{0, size / 2, size - 1} {
			p, err := merkle.InclusionProof(l.store.read, index, size)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(index, size, bytesOf(append([]merkle.Hash{l.leaves[index]}, p...)...))
		}
	}
	f.Add(uint64(0), uint64(0), []byte{})
	f.Add(uint64(3), uint64(2), bytesOf(l.leaves[3], l.leaves[2]))
	f.Add(uint64(math.MaxUint64-1), uint64(math.MaxUint64), make([]byte, 65*merkle.HashSize))
	f.Fuzz(func(t *testing.T, index, size uint64, data []byte) {
		var leaf merkle.Hash
		n := copy(leaf[:], data)
		proof := hashesOf(data[n:])
		if merkle.VerifyInclusion(leaf, index, size, proof, fuzzRoot(l, size)) != nil {
			return
		}
		if size == 0 || size > fuzzLogSize || index >= size {
			t.Fatalf("a proof of leaf %d verified in size %d, which the log never had", index, size)
		}
		want, err := merkle.InclusionProof(l.store.read, index, size)
		if err != nil {
			t.Fatal(err)
		}
		if leaf != l.leaves[index] || !slices.Equal(proof, want) {
			t.Fatalf("a forged proof of leaf %d in size %d verified: leaf %s proof %v, genuine %s %v", index, size, leaf, proof, l.leaves[index], want)
		}
	})
}

// The data is the proof.
func FuzzVerifyConsistency(f *testing.F) {
	l := newTestLog(fuzzLogSize)
	for n := uint64(1); n <= fuzzLogSize; n += 4 {
		for _, m := range []uint64{1, (n + 1) / 2, n - 1, n} {
			if m == 0 {
				continue
			}
			p, err := merkle.ConsistencyProof(l.store.read, m, n)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(m, n, bytesOf(p...))
		}
	}
	f.Add(uint64(0), uint64(0), []byte{})
	f.Add(uint64(5), uint64(3), bytesOf(l.leaves[0], l.leaves[1]))
	f.Add(uint64(math.MaxUint64-1), uint64(math.MaxUint64), make([]byte, 130*merkle.HashSize))
	f.Fuzz(func(t *testing.T, m, n uint64, data []byte) {
		proof := hashesOf(data)
		if merkle.VerifyConsistency(m, n, fuzzRoot(l, m), fuzzRoot(l, n), proof) != nil {
			return
		}
		if m == 0 || m > n {
			t.Fatalf("a consistency proof from %d to %d verified", m, n)
		}
		if m == n {
			if len(proof) != 0 {
				t.Fatalf("a consistency proof of %d hashes from %d to itself verified", len(proof), m)
			}
			return
		}
		if n > fuzzLogSize {
			t.Fatalf("a consistency proof from %d to %d verified, a size the log never had", m, n)
		}
		want, err := merkle.ConsistencyProof(l.store.read, m, n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(proof, want) {
			t.Fatalf("a forged consistency proof from %d to %d verified: %v, genuine %v", m, n, proof, want)
		}
	})
}
