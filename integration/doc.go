// Package integration holds scatter's end-to-end tests and benchmarks: the scatter binary
// built once and run as real donor processes on loopback, a client node in the test
// process reaching them over TCP through the private DHT, and the whole data path
// (chunking, sealing, Reed-Solomon, placement, verified reads) on top.
//
// The package has no code of its own; everything is in its test files. TestPeers is the
// proof of the "Peers" milestone (20 donor processes, 256 MiB placed and read back, m
// holders killed, hostile donors bypassed); BenchmarkPeers measures fragment PUT and GET
// throughput and chunk read latency against 12 donor processes (see docs/benchmarks.md).
package integration
