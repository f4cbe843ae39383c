// Package snapshot is the drive's metadata as it is kept in the network: a Merkle tree of
// objects, each a plaintext chunk stored through the chunk pipeline like file data (so it
// is sealed, erasure-coded and placed the same way), named by its pipeline.Ref and opened
// by its chunk read key (crypt.ChunkKey).
//
// A directory is a tree of pages: leaf pages hold its entries in name order, cut where a
// keyed hash of a name says (content-defined), so adding one entry to a directory of
// 100,000 changes one leaf and the index pages above it; index pages hold pointers to the
// pages below. A file's entry holds its extents (each with the chunk's Ref and read key),
// or, when it has many, a pointer to a tree of extent pages cut the same way. A
// directory's entry points to the root of that directory's tree, and one root object
// holds the top directory's entry. Since every pointer carries the read key of what it
// points to, a pointer to a directory is a capability for that subtree and nothing else.
//
// Objects are deterministic functions of their content, and so are their chunk IDs: a
// Builder that is told which objects are already on the peers (by ID) uploads only the
// objects that changed, that is, the pages along the changed paths. Byte layout:
// docs/format.md "Snapshot objects".
package snapshot
