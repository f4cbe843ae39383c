package pipeline

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds throughput per CPU second of the process ("cpu-MB/s") next to the
// wall-clock MB/s: the project's machine is shared, and under load wall time measures
// the neighbours. Call it with the CPU time read before b.Loop.
func reportCPU(b *testing.B, start time.Duration, bytesPerOp int64) {
	if used := cpuTime() - start; used > 0 {
		b.ReportMetric(float64(b.N)*float64(bytesPerOp)/used.Seconds()/1e6, "cpu-MB/s")
	}
}
