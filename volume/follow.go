package volume

import (
	"fmt"

	"github.com/scatterfs/scatter/volume/cache"
)

// OpenCache opens the read cache of sealed chunks in cfg.CacheDir (default Dir/cache),
// bounded by cfg.CacheMax, for volumes opened with OpenShared. A cache holds no state a
// volume must close, and is safe for concurrent use, so several volumes may share one.
func OpenCache(cfg Config) (*cache.Cache, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return cache.Open(cfg.CacheDir, cfg.CacheMax)
}

// OpenShared is Open with the read cache c instead of one of its own: a read-only
// follower opens each newly restored snapshot of the drive while the volume of the
// previous one may still serve open files, and both keep using (and filling) one cache,
// so a swap costs no refetching of chunks that did not change. cfg.CacheDir and
// cfg.CacheMax are ignored; Close leaves c alone.
func OpenShared(cfg Config, chunks Chunks, c *cache.Cache) (*Volume, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: OpenShared with no cache", ErrInvalid)
	}
	cfg.sharedCache = c
	return Open(cfg, chunks)
}
