package dht

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its test: every node, server and
// loop must be stopped by Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
