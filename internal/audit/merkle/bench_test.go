package merkle_test

import (
	"testing"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// BenchmarkAppend is one leaf appended, with its completed nodes handed to
// a store callback that keeps them in memory.
func BenchmarkAppend(b *testing.B) {
	leaf := merkle.LeafHash([]byte("record"))
	var tr merkle.Tree
	nodes := make([]merkle.Hash, 0, 1<<20)
	store := func(_ merkle.NodeID, h merkle.Hash) {
		if len(nodes) == cap(nodes) {
			nodes = nodes[:0]
		}
		nodes = append(nodes, h)
	}
	b.ReportAllocs()
	for b.Loop() {
		tr.Append(leaf, store)
	}
}

// BenchmarkInclusionProof is one inclusion proof in a log of 2^16+1 leaves
// read from an in-memory map of its nodes.
func BenchmarkInclusionProof(b *testing.B) {
	const size = 1<<16 + 1
	l := newTestLog(size)
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		if _, err := merkle.InclusionProof(l.store.read, i%size, size); err != nil {
			b.Fatal(err)
		}
		i += 7919
	}
}
