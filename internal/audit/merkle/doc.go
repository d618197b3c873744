// Package merkle is the Merkle tree of the audit log: the Merkle Tree Hash,
// audit paths (inclusion proofs) and consistency proofs of RFC 6962 §2.1
// (restated as RFC 9162 §2.1), over SHA-256 with the 0x00 leaf and 0x01
// node prefixes, so that any RFC 6962 / Certificate Transparency verifier
// checks our proofs and ours checks theirs.
//
// A Tree holds only the right edge of the log (one hash per set bit of its
// size): enough to append and to compute the root without a read. Every
// perfect subtree that an append completes is handed to a callback, so a
// store keeps each node once and later answers RootAt, InclusionProof and
// ConsistencyProof with one NodeReader call per proof (O(log size) nodes).
// The verifiers need nothing but the proof, the sizes and the roots, and run
// offline: in clients and in `unhidra audit verify`.
//
// The roots are what the log signs in its checkpoints, in the C2SP
// tlog-checkpoint format (https://c2sp.org/tlog-checkpoint: origin line,
// tree size, base64 root hash, as a signed note).
//
// Concurrency: the functions are pure and safe for concurrent use; a Tree is
// a plain value that its owner must not append to from two goroutines at
// once.
package merkle
