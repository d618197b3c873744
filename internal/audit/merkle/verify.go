package merkle

import (
	"math/bits"

	"github.com/unhidra/unhidra"
)

// The verifiers follow the iterative algorithms of RFC 9162 §2.1.3.2
// (inclusion) and §2.1.4.2 (consistency), which check proofs in the RFC 6962
// format. They first check the proof's length, which is a function of the
// index and sizes, so that a proof with a hash too many or too few is
// named as such; every error is an *unhidra.Error with code invalid.
//
// As in RFC 6962, a root authenticates its size only through the signed
// checkpoint that carries both: a proof may also verify for another size
// claimed against the same root (leaf 0's path in size 3 verifies as size 4
// with the root of size 3). Take size and root from one checkpoint.

// VerifyInclusion checks that proof is the audit path of the leaf with hash
// leaf at index in the tree of size leaves whose root is root.
func VerifyInclusion(leaf Hash, index, size uint64, proof []Hash, root Hash) error {
	if index >= size {
		return invalid("inclusion proof for leaf %d in a tree of size %d: index out of range", index, size)
	}
	if want := inclusionLen(index, size); len(proof) != want {
		return invalid("inclusion proof for leaf %d in a tree of size %d has %d hashes, want %d", index, size, len(proof), want)
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range proof {
		if sn == 0 {
			return invalid("inclusion proof for leaf %d in a tree of size %d is too long", index, size)
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return invalid("inclusion proof for leaf %d in a tree of size %d is too short", index, size)
	}
	if r != root {
		return invalid("inclusion proof for leaf %d in a tree of size %d leads to root %s, want %s", index, size, r, root)
	}
	return nil
}

// VerifyConsistency checks that proof shows the tree of size m with root
// rootM to be a prefix of the tree of size n with root rootN (0 < m <= n;
// for m == n the proof is empty and the roots must be equal).
func VerifyConsistency(m, n uint64, rootM, rootN Hash, proof []Hash) error {
	if m == 0 || m > n {
		return invalid("consistency proof from size %d to size %d: want 0 < m <= n", m, n)
	}
	if m == n {
		if len(proof) != 0 {
			return invalid("consistency proof from size %d to itself has %d hashes, want 0", m, len(proof))
		}
		if rootM != rootN {
			return invalid("consistency from size %d to itself: roots %s and %s differ", m, rootM, rootN)
		}
		return nil
	}
	if want := consistencyLen(m, n); len(proof) != want {
		return invalid("consistency proof from size %d to size %d has %d hashes, want %d", m, n, len(proof), want)
	}
	path := proof
	if m&(m-1) == 0 {
		// The old tree is a perfect subtree of the new one: its root is
		// the proof's implicit first element.
		path = append([]Hash{rootM}, proof...)
	}
	fn, sn := m-1, n-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := path[0], path[0]
	for _, c := range path[1:] {
		if sn == 0 {
			return invalid("consistency proof from size %d to size %d is too long", m, n)
		}
		if fn&1 == 1 || fn == sn {
			fr = NodeHash(c, fr)
			sr = NodeHash(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = NodeHash(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return invalid("consistency proof from size %d to size %d is too short", m, n)
	}
	if fr != rootM {
		return invalid("consistency proof from size %d to size %d leads to old root %s, want %s", m, n, fr, rootM)
	}
	if sr != rootN {
		return invalid("consistency proof from size %d to size %d leads to new root %s, want %s", m, n, sr, rootN)
	}
	return nil
}

// inclusionLen is the length of PATH(index, D[0:size]): one hash per level
// below the node where the paths to the leaf and to the last leaf fork,
// plus one per perfect subtree left of that node's right neighbours.
func inclusionLen(index, size uint64) int {
	inner := bits.Len64(index ^ (size - 1))
	return inner + bits.OnesCount64(index>>inner)
}

// consistencyLen is the length of PROOF(m, D[0:n]) for 0 < m < n: the
// inclusion path of the largest perfect subtree ending at m, plus that
// subtree itself unless it is the whole old tree (m a power of two).
func consistencyLen(m, n uint64) int {
	tz := bits.TrailingZeros64(m)
	fn, sn := (m-1)>>tz, (n-1)>>tz
	inner := bits.Len64(fn ^ sn)
	l := inner + bits.OnesCount64(fn>>inner)
	if m&(m-1) != 0 {
		l++
	}
	return l
}

func invalid(format string, args ...any) error {
	return unhidra.Errorf(unhidra.EINVALID, "merkle: "+format, args...)
}
