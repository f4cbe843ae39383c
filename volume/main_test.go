package volume_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every volume is closed,
// and Close must stop uploaders, prefetchers and fetches.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
