#!/bin/sh
# bench/peers.sh runs BenchmarkPeers (integration/bench_test.go): 12 `scatter daemon`
# processes on this machine and a client in the test process; see docs/benchmarks.md,
# "Peers end to end". It keeps in $OUT the benchmark output, the load average, the
# client's CPU profile (go test -cpuprofile) with its top functions, and, with PERF=1,
# a perf profile of the donor processes (perf record -p, attached once all 12 run) with
# their top functions. *-categories.txt sum the client's and the donors' CPU into coarse
# categories (bench/cpu-categories.awk), donors-activities.txt by what the stacks were
# doing (bench/stacks.py).
#
#   bench/peers.sh                      # -benchtime 200x -count 3
#   PERF=1 COUNT=1 bench/peers.sh       # with perf sampling of the donor processes
set -eu
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/scatter-bench-peers}
mkdir -p "$out"
# The donor binary, kept after the run so that perf can read its symbols; SCATTER_BIN
# names one already built.
if [ -n "${SCATTER_BIN:-}" ]; then
	cp "$SCATTER_BIN" "$out/scatter.new" && mv "$out/scatter.new" "$out/scatter"
else
	go build -o "$out/scatter" ./cmd/scatter
fi
export SCATTER_INTEGRATION_BIN="$out/scatter"
set -- go test -run '^$' -bench "${BENCH:-BenchmarkPeers}" -benchtime "${BENCHTIME:-200x}" -count "${COUNT:-3}" \
	-cpuprofile "$out/client.pprof" -o "$out/integration.test" ./integration
echo "load before: $(cat /proc/loadavg)" | tee "$out/load.txt"
if [ "${PERF:-0}" = 1 ]; then
	"$@" > "$out/bench.txt" &
	test=$!
	# Attach perf to the donors alone, once all have started: other scatter processes may
	# be running on the machine.
	pids=
	while kill -0 "$test" 2>/dev/null; do
		pids=$(pgrep -d, -f "^$out/scatter daemon" || true)
		[ "$(echo "$pids" | tr , '\n' | grep -c .)" -ge 12 ] && break
		sleep 0.1
	done
	perf record -q -g -F 999 -p "$pids" -o "$out/perf.data" 2>/dev/null &
	rec=$!
	wait "$test"
	kill -INT "$rec" 2>/dev/null || true # it also stops by itself once the donors exit
	wait "$rec" || true
	cat "$out/bench.txt"
	echo "$pids" > "$out/donor-pids.txt"
	report() { perf report -i "$out/perf.data" --no-children --sort sym --stdio "$@" 2>/dev/null; }
	report | grep -v '^$' | head -80 > "$out/donors-perf.txt"
	report -g none | awk -f bench/cpu-categories.awk | sort -rn > "$out/donors-categories.txt"
	report -g folded,0,caller,count | python3 bench/stacks.py > "$out/donors-activities.txt"
else
	"$@" | tee "$out/bench.txt"
fi
echo "load after: $(cat /proc/loadavg)" | tee -a "$out/load.txt"
go tool pprof -top -nodecount 40 "$out/integration.test" "$out/client.pprof" > "$out/client-top.txt" 2>/dev/null
go tool pprof -top -nodecount 100000 -nodefraction 0 "$out/integration.test" "$out/client.pprof" 2>/dev/null |
	awk 'NF >= 6 && $2 ~ /%$/ && $1 ~ /^[0-9.]+(s|ms|us)$/ { p = $2; sub(/%/, "", p); print "  " p "%  [.] " $6 }' |
	awk -f bench/cpu-categories.awk | sort -rn > "$out/client-categories.txt"
echo "results in $out"
