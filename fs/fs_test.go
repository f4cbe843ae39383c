package fs

import (
	"io"
	"log/slog"
	"os"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/scatterfs/scatter/volume"
	"github.com/scatterfs/scatter/volume/memchunks"
)

// mount mounts a fresh volume over an in-memory chunk store and unmounts it in Cleanup.
// It skips the test when this machine cannot mount FUSE.
func mount(t *testing.T, cfg volume.Config) (string, *volume.Volume, *memchunks.Store) {
	t.Helper()
	return mountOpts(t, cfg, Options{})
}

func mountOpts(t *testing.T, cfg volume.Config, o Options) (string, *volume.Volume, *memchunks.Store) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Skip("FUSE tests need root and /dev/fuse")
	}
	store := memchunks.New(64<<10, 1<<40)
	cfg.Dir = t.TempDir()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	v, err := volume.Open(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	o.Logger, o.Debug = cfg.Logger, os.Getenv("SCATTER_FUSE_DEBUG") != ""
	srv, err := Mount(mnt, v, o)
	if err != nil {
		v.Close()
		t.Skipf("FUSE mount unavailable here: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if err := v.Close(); err != nil {
			t.Errorf("close volume: %v", err)
		}
	})
	return mnt, v, store
}

func TestPosix(t *testing.T) {
	names := make([]string, 0, len(posixtest.All))
	for nm := range posixtest.All {
		names = append(names, nm)
	}
	sort.Strings(names)
	for _, nm := range names {
		t.Run(nm, func(t *testing.T) {
			mnt, _, _ := mount(t, volume.Config{})
			posixtest.All[nm](t, mnt)
		})
	}
}
