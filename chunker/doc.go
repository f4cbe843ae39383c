// Package chunker cuts file data into chunks and chunks into Reed-Solomon fragments.
//
// Chunk boundaries are content-defined and keyed: a keyed FastCDC (go-cdc-chunkers) whose
// gear table is derived from the drive's chunker sub-key, so equal content gives equal
// chunks within a drive while the boundaries do not fingerprint known files for anyone
// without the key. The splitter implements boxo's chunk.Splitter, and FromString still
// offers boxo's own splitters (size-N, rabin, buzhash) where IPFS-compatible layouts are
// wanted.
//
// A sealed chunk (opaque bytes from crypt) is coded by a Coder into k data and m parity
// fragments. Each fragment carries a small header naming its chunk and index, and is
// named by its FragmentID (BLAKE3 of the whole fragment). Decoding verifies every
// fragment against the IDs recorded in the manifest before Reed-Solomon sees it, because
// Reed-Solomon cannot tell a bad shard from a good one: a corrupt or substituted fragment
// is excluded and reported, never decoded into wrong bytes.
//
// The package does no I/O beyond reading the io.Reader given to a splitter. The byte
// layouts are specified in docs/format.md ("Chunk boundaries", "Fragment").
package chunker
