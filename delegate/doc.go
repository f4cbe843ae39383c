// Package delegate lets a helper the owner trusts keep a drive's fragments alive while
// the owner's devices are off, holding only the drive's repair capability
// (crypt.RepairCap): fragment lists and holders, the storage key, no names and no read
// keys.
//
// Two records flow between them, both IPNS records in the DHT (root.EncodeNamed) whose
// payload is encrypted under keys derived from the repair secret:
//
//   - the manifest (owner -> repairer), signed by the drive's manifest identity, which
//     only the owner holds: every live chunk Ref of the drive, in pages stored as chunks
//     through the ordinary pipeline but sealed with keys derived from the repair secret
//     (Owner.Publish);
//   - the repair log (repairer -> owner), signed by the log identity, whose key the
//     capability holds: the Ref replacements the repairer made, old Ref -> new Ref
//     (Repairer.Round publishes it; Owner.Merge applies it where the owner's metadata still
//     records the old holders).
//
// The Repairer runs package upkeep over a Drive backed by the manifest: checks, rebuilds
// at a bounded rate, renews every lease; it never deletes (garbage stays the owner's).
// Byte layouts: docs/format.md, "Repair capability and manifest"; what the capability
// reveals: docs/security.md, "The repair capability".
package delegate
