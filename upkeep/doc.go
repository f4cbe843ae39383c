// Package upkeep keeps a drive's fragments alive on the peers with no central server:
// it checks every chunk's fragments with one batched HAS request per holder, rebuilds
// missing fragments from any k good ones onto new distinct peers, renews the leases of all
// fragments with one signed request per peer, and deletes the fragments of chunks no file
// references any more.
//
// It needs only the repair capability: the drive's storage key (inside the
// swarm.Network, which signs DELETE and RENEW with it) and the chunk Refs (fragment IDs,
// holders, sizes, k and m). It never decrypts: fragments are rebuilt byte for byte with
// chunker.Coder.Regenerate, so a helper holding the capability can repair and renew
// while the owner's device sleeps, without learning file names or contents.
//
// Upkeep is the mechanism over a swarm.Network; Loop runs it in the background of a
// mount, over a Drive (the metadata store: volume.Volume implements it), and Guard closes
// the race between deleting a garbage chunk's fragments and writing the same content
// again. The package imports neither go-fuse nor libp2p.
package upkeep
