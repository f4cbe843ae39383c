package volume_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/scatterfs/scatter/volume"
)

// TestOpenDuringUnlinkCommit opens a file while the transaction that drops its last link
// (an unlink, and a rename over it) has decided to delete it but not yet committed. The
// open used to succeed on the last committed state, and the commit then deleted the
// inode under the open handle: fstat of an open file returned ENOENT. The open must fail
// with ENOENT (the name is gone), or yield a handle that stays valid.
func TestOpenDuringUnlinkCommit(t *testing.T) {
	e := newEnv(t, volume.Config{})
	for _, how := range []string{"unlink", "rename"} {
		t.Run(how, func(t *testing.T) {
			a, h := e.create(volume.RootIno, "f")
			e.write(h, []byte("data"), 0)
			h.Release()
			var (
				opened  *volume.Handle
				openErr error
				hooked  int
			)
			volume.SetLinkDroppedHook(func(ino uint64) {
				if ino == a.Ino {
					hooked++
					opened, openErr = e.v.Open(ctx, ino, syscall.O_RDONLY)
				}
			})
			defer volume.SetLinkDroppedHook(nil)
			if how == "unlink" {
				if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
					t.Fatal(err)
				}
			} else {
				_, tmp := e.create(volume.RootIno, "tmp")
				tmp.Release()
				if err := e.v.Rename(ctx, volume.RootIno, "tmp", volume.RootIno, "f", 0); err != nil {
					t.Fatal(err)
				}
				if err := e.v.Unlink(ctx, volume.RootIno, "f"); err != nil {
					t.Fatal(err)
				}
			}
			volume.SetLinkDroppedHook(nil)
			if hooked != 1 {
				t.Fatalf("the hook ran %d times, want once", hooked)
			}
			if openErr != nil {
				if !errors.Is(openErr, volume.ErrNotFound) {
					t.Fatalf("open during the unlink's commit: %v, want ErrNotFound or success", openErr)
				}
			} else {
				defer opened.Release()
				if _, err := opened.Getattr(ctx); err != nil {
					t.Fatalf("getattr of a file opened during the unlink's commit: %v", err)
				}
				if got := e.read(opened, 4, 0); string(got) != "data" {
					t.Fatalf("read %q", got)
				}
			}
			if _, err := e.v.Open(ctx, a.Ino, syscall.O_RDONLY); !errors.Is(err, volume.ErrNotFound) {
				t.Fatalf("open after the unlink committed: %v, want ErrNotFound", err)
			}
		})
	}
}
