package merkle_test

import (
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// memStore keeps nodes the way the audit store will: the leaf hashes
// (level 0) plus every node Append hands to its callback. Its reader fails
// on a node that was never stored, and counts calls and the ids asked for.
type memStore struct {
	nodes map[merkle.NodeID]merkle.Hash
	calls int
	asked map[merkle.NodeID]bool
}

func newMemStore() *memStore {
	return &memStore{nodes: map[merkle.NodeID]merkle.Hash{}, asked: map[merkle.NodeID]bool{}}
}

func (s *memStore) put(id merkle.NodeID, h merkle.Hash) { s.nodes[id] = h }

func (s *memStore) read(ids []merkle.NodeID) ([]merkle.Hash, error) {
	s.calls++
	out := make([]merkle.Hash, len(ids))
	for i, id := range ids {
		h, ok := s.nodes[id]
		if !ok {
			return nil, fmt.Errorf("node %+v was never stored", id)
		}
		s.asked[id] = true
		out[i] = h
	}
	return out, nil
}

// testLog is a tree of n leaves built by Append into a memStore, with the
// root of every size 0..n.
type testLog struct {
	tree   merkle.Tree
	store  *memStore
	leaves []merkle.Hash
	roots  []merkle.Hash
}

// leafData is the i-th leaf's input: distinct for every i.
func leafData(i int) []byte { return []byte(fmt.Sprintf("record %d", i)) }

func newTestLog(n int) *testLog {
	l := &testLog{store: newMemStore(), roots: []merkle.Hash{merkle.EmptyRoot()}}
	for i := 0; i < n; i++ {
		l.add(merkle.LeafHash(leafData(i)))
	}
	return l
}

func (l *testLog) add(leaf merkle.Hash) {
	l.store.put(merkle.NodeID{Level: 0, Index: l.tree.Size()}, leaf)
	l.tree.Append(leaf, l.store.put)
	l.leaves = append(l.leaves, leaf)
	l.roots = append(l.roots, l.tree.Root())
}

func mustHash(t testing.TB, s string) merkle.Hash {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != merkle.HashSize {
		t.Fatalf("bad hash literal %q", s)
	}
	return merkle.Hash(b)
}

func mustHashes(t testing.TB, ss ...string) []merkle.Hash {
	t.Helper()
	out := make([]merkle.Hash, len(ss))
	for i, s := range ss {
		out[i] = mustHash(t, s)
	}
	return out
}

func mustBytes(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex literal %q", s)
	}
	return b
}
