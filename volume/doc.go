// Package volume is scatter's filesystem core: inodes, directories, file content as extents
// of chunks, bounded write-back staging with a crash-safe journal, and a bounded read cache
// of sealed chunks. It imports neither go-fuse nor libp2p: package fs translates kernel
// requests into calls on a *Volume, and chunks reach the peers through the Chunks interface.
//
// Metadata lives in a local bbolt database (see docs/format.md, "Metadata store"). File
// content is a sorted list of extents, each the prefix of one content-defined chunk or, for
// tiny files, bytes inline in the record; gaps are holes. Writes land in a per-inode sparse
// staging file whose bytes count against a global hard cap; background uploaders cut dirty
// ranges into chunks, put them, and swap the extents in one transaction. See docs/design.md,
// "Filesystem core".
package volume
