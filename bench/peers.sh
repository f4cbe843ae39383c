#!/bin/sh
# bench/peers.sh runs BenchmarkPeers (integration/bench_test.go): 12 `scatter daemon`
# processes on this machine and a client in the test process; see docs/benchmarks.md,
# "Peers end to end". It keeps in $OUT the benchmark output, the load average, the
# client's CPU profile (go test -cpuprofile) with its top functions, and, with PERF=1,
# a perf profile of the whole machine during the run with the donors' (comm "scatter")
# top functions.
#
#   bench/peers.sh                      # -benchtime 100x -count 3
#   PERF=1 COUNT=1 bench/peers.sh       # with perf sampling of the donor processes
set -eu
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/scatter-bench-peers}
mkdir -p "$out"
# A prebuilt donor binary, kept after the run so that perf can read its symbols.
go build -o "$out/scatter" ./cmd/scatter
export SCATTER_INTEGRATION_BIN="$out/scatter"
set -- go test -run '^$' -bench BenchmarkPeers -benchtime "${BENCHTIME:-100x}" -count "${COUNT:-3}" \
	-cpuprofile "$out/client.pprof" -o "$out/integration.test" ./integration
echo "load before: $(cat /proc/loadavg)" | tee "$out/load.txt"
if [ "${PERF:-0}" = 1 ]; then
	perf record -q -a -g -F 499 -o "$out/perf.data" -- "$@" | tee "$out/bench.txt"
	perf report -i "$out/perf.data" --comm scatter --no-children --sort sym --stdio 2>/dev/null |
		grep -v '^$' | head -80 > "$out/donors-perf.txt"
else
	"$@" | tee "$out/bench.txt"
fi
echo "load after: $(cat /proc/loadavg)" | tee -a "$out/load.txt"
go tool pprof -top -nodecount 40 "$out/integration.test" "$out/client.pprof" > "$out/client-top.txt" 2>/dev/null
echo "results in $out"
