package merkle

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashSize is the size of every hash in the tree (SHA-256).
const HashSize = sha256.Size

// Hash is a leaf hash, a node hash or a root.
type Hash [HashSize]byte

// String returns h in lowercase hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// RFC 6962 §2.1 domain separation prefixes.
const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// LeafHash is the hash of a leaf: SHA-256(0x00 || data).
func LeafHash(data []byte) Hash {
	d := sha256.New()
	d.Write([]byte{leafPrefix})
	d.Write(data)
	var h Hash
	d.Sum(h[:0])
	return h
}

// NodeHash is the hash of an interior node: SHA-256(0x01 || left || right).
func NodeHash(left, right Hash) Hash {
	var b [1 + 2*HashSize]byte
	b[0] = nodePrefix
	copy(b[1:], left[:])
	copy(b[1+HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// EmptyRoot is the Merkle Tree Hash of no leaves: SHA-256 of the empty
// string.
func EmptyRoot() Hash { return sha256.Sum256(nil) }

// NodeID names the root of a perfect subtree: Level 0 is a leaf (Index =
// leaf index); Level L, Index i covers leaves [i<<L, (i+1)<<L).
type NodeID struct {
	Level uint8
	Index uint64
}
