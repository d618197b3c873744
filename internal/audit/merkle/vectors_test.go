package merkle_test

import (
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/unhidra/unhidra/internal/audit/merkle"
)

// The known-answer values below are the RFC 6962 reference vectors used by
// Certificate Transparency's and Trillian's tests, as published in
// github.com/transparency-dev/merkle v0.0.2: testonly/constants.go
// (LeafInputs, NodeHashes, RootHashes, EmptyRootHash) and
// proof/verify_test.go (inclusionProofs, consistencyProofs). Only the values
// are copied.

var vectorLeafInputs = []string{
	"",
	"00",
	"10",
	"2021",
	"3031",
	"40414243",
	"5051525354555657",
	"606162636465666768696a6b6c6d6e6f",
}

// vectorNodes[level][index] is the hash of every perfect subtree of the
// 8-leaf tree.
var vectorNodes = [][]string{{
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
	"0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
	"07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
	"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
	"4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
	"b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
	"46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
}, {
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
	"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
	"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
}, {
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
}, {
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}}

// vectorRoots[size] is the root of the first size leaves.
var vectorRoots = []string{
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

// The source numbers leaves from 1 in its inclusion vectors; index here is
// 0-based.
var vectorInclusion = []struct {
	index, size uint64
	proof       []string
}{
	{0, 1, nil},
	{0, 8, []string{
		"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
	}},
	{5, 8, []string{
		"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
		"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	}},
	{2, 3, []string{
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	}},
	{1, 5, []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
	}},
}

var vectorConsistency = []struct {
	m, n  uint64
	proof []string
}{
	{1, 1, nil},
	{1, 8, []string{
		"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
	}},
	{6, 8, []string{
		"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
		"ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	}},
	{2, 5, []string{
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
	}},
	{6, 7, []string{
		"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
		"b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	}},
}

// vectorLog appends the eight reference leaves.
func vectorLog(t *testing.T) *testLog {
	t.Helper()
	l := &testLog{store: newMemStore(), roots: []merkle.Hash{merkle.EmptyRoot()}}
	for _, in := range vectorLeafInputs {
		l.add(merkle.LeafHash(mustBytes(t, in)))
	}
	return l
}

func TestHashesMatchTheRFC6962ReferenceVectors(t *testing.T) {
	if got, want := merkle.EmptyRoot(), mustHash(t, vectorRoots[0]); got != want {
		t.Errorf("EmptyRoot() = %s, want %s", got, want)
	}
	if got, want := merkle.EmptyRoot(), merkle.Hash(sha256.Sum256(nil)); got != want {
		t.Errorf("EmptyRoot() = %s, want SHA-256 of nothing %s", got, want)
	}
	for i, in := range vectorLeafInputs {
		if got, want := merkle.LeafHash(mustBytes(t, in)), mustHash(t, vectorNodes[0][i]); got != want {
			t.Errorf("LeafHash(%q) = %s, want %s", in, got, want)
		}
	}
	for level := 1; level < len(vectorNodes); level++ {
		for i, s := range vectorNodes[level] {
			left, right := mustHash(t, vectorNodes[level-1][2*i]), mustHash(t, vectorNodes[level-1][2*i+1])
			if got, want := merkle.NodeHash(left, right), mustHash(t, s); got != want {
				t.Errorf("NodeHash of node (%d, %d) = %s, want %s", level, i, got, want)
			}
		}
	}
	if got, want := mustHash(t, vectorRoots[1]).String(), vectorRoots[1]; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestTreeRootsMatchTheReferenceVectors(t *testing.T) {
	l := vectorLog(t)
	for size, s := range vectorRoots {
		want := mustHash(t, s)
		if got := l.roots[size]; got != want {
			t.Errorf("Tree.Root() after %d appends = %s, want %s", size, got, want)
		}
		got, err := merkle.RootAt(l.store.read, uint64(size))
		if err != nil || got != want {
			t.Errorf("RootAt(%d) = %s, %v; want %s", size, got, err, want)
		}
	}
	// Append stored exactly the perfect subtrees of the reference tree.
	want := map[merkle.NodeID]merkle.Hash{}
	for level, hs := range vectorNodes {
		for i, s := range hs {
			want[merkle.NodeID{Level: uint8(level), Index: uint64(i)}] = mustHash(t, s)
		}
	}
	if len(l.store.nodes) != len(want) {
		t.Errorf("stored %d nodes, want %d", len(l.store.nodes), len(want))
	}
	for id, h := range want {
		if got := l.store.nodes[id]; got != h {
			t.Errorf("stored node %+v = %s, want %s", id, got, h)
		}
	}
}

func TestProofsMatchTheReferenceVectors(t *testing.T) {
	l := vectorLog(t)
	for _, v := range vectorInclusion {
		want := mustHashes(t, v.proof...)
		got, err := merkle.InclusionProof(l.store.read, v.index, v.size)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("InclusionProof(%d, %d) = %v, %v; want %v", v.index, v.size, got, err, want)
		}
		if err := merkle.VerifyInclusion(l.leaves[v.index], v.index, v.size, want, l.roots[v.size]); err != nil {
			t.Errorf("VerifyInclusion of the reference proof of leaf %d in size %d: %v", v.index, v.size, err)
		}
	}
	for _, v := range vectorConsistency {
		want := mustHashes(t, v.proof...)
		got, err := merkle.ConsistencyProof(l.store.read, v.m, v.n)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ConsistencyProof(%d, %d) = %v, %v; want %v", v.m, v.n, got, err, want)
		}
		if err := merkle.VerifyConsistency(v.m, v.n, l.roots[v.m], l.roots[v.n], want); err != nil {
			t.Errorf("VerifyConsistency of the reference proof from %d to %d: %v", v.m, v.n, err)
		}
	}
}
