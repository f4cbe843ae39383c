package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/scatterfs/scatter/crypt"
	"github.com/scatterfs/scatter/root"
)

// One device writes a drive at a time. The writing mount names itself (its DHT node's
// peer ID) in every root record it publishes, with a lease end it renews (see
// snapshotConfig.Lease), and releases the lease in the record it publishes at a clean
// unmount. Before serving, a mount looks the root record up and refuses the drive while
// another device's lease runs: two writers would each publish its own tree, and the
// later record would silently drop the other's changes.

// errWriterLease means another device holds the drive's writer lease.
var errWriterLease = errors.New("the drive is mounted for writing on another device")

// errStaleMetadata means another device published the drive after this data dir last
// did: writing from it would publish an older tree over the newer one.
var errStaleMetadata = errors.New("the drive was changed on another device since this device last wrote it")

// checkWriter looks up the drive's root record and decides whether the device named me
// may write the drive. seen is the highest root record sequence this data dir published
// or recovered (0 for none or unknown). A drive with no record is free. When the record
// cannot be read (peers unreachable), the lease cannot be checked: the mount goes on and
// says so, as it could not publish either. force (-force-takeover) ignores another
// writer's lease and a newer record, saying so.
func checkWriter(ctx context.Context, dht routing.ValueStore, keys *crypt.Keys, me string, seen uint64, force bool,
	now time.Time, stdout io.Writer, log *slog.Logger) error {
	rec, err := root.Get(ctx, dht, keys, 0)
	if errors.Is(err, root.ErrNotFound) {
		return nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(stdout, "Could not read the drive's root record (%v): the writer lease is not checked.\n", err)
		log.Warn("writer lease: root record lookup", "err", err)
		return nil
	}
	if rec.Writer == me {
		return nil // this device's own record: after a crash, or a release
	}
	var refuse error
	switch {
	case rec.Held(now):
		refuse = fmt.Errorf("%w (%s, lease until %s, root record %d): unmount it there first, or if that device "+
			"crashed wait for the lease to end",
			errWriterLease, rec.Writer, rec.LeaseExpiry.UTC().Format(time.RFC3339), rec.Seq)
	case seen > 0 && rec.Seq > seen:
		refuse = fmt.Errorf("%w (%s published root record %d, this device's last is %d): move this device's data "+
			"directory away and mount again to recover the newest metadata (data still staged there is not in it)",
			errStaleMetadata, writerName(rec.Writer), rec.Seq, seen)
	default:
		return nil
	}
	if !force {
		return fmt.Errorf("%w; -force-takeover ignores this (dangerous)", refuse)
	}
	fmt.Fprintf(stdout, "-force-takeover: %v. Taking the drive over: changes the other device publishes from now\n"+
		"on and this device's compete, and the last published wins.\n", refuse)
	return nil
}

// writerName is a record's writer for messages.
func writerName(w string) string {
	if w == "" {
		return "a device of an earlier scatter"
	}
	return w
}
