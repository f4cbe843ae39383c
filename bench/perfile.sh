#!/bin/sh
# bench/perfile.sh measures what one file costs the mount during rsync -a: it mounts
# scatter with its local swarm (DONORS in-process donors, k+m 8+4), rsyncs GOSRC into it and
# prints the mount process's CPU seconds (user+sys, from /proc) during the rsync and until
# scatter sync returns (the uploads after close(2) included), per file,
# and with FUSE=1 the FUSE requests by opcode (from -debug-fuse; a separate, slower run, so
# its CPU is not the figure). With PPROF=1 it keeps a 'go tool pprof' CPU profile of the
# rsync and heap profiles after it in OUT. Needs root. See docs/benchmarks.md, "Per-file cost
# and memory".
#
#   GOSRC=$(go env GOROOT)/src/cmd/go bench/perfile.sh
#   FUSE=1 GOSRC=$(go env GOROOT)/src/net bench/perfile.sh
#
# Environment: GOSRC ($(go env GOROOT)/src/cmd/go), OUT (/tmp/scatter-perfile), DONORS (12),
# SCATTER_BIN (a scatter binary instead of building cmd/scatter), FUSE=1, PPROF=1.
set -eu
cd "$(dirname "$0")/.."
src=${GOSRC:-$(go env GOROOT)/src/cmd/go}
out=${OUT:-/tmp/scatter-perfile}
donors=${DONORS:-12}
mkdir -p "$out"
bin=${SCATTER_BIN:-$out/scatter}
[ -n "${SCATTER_BIN:-}" ] || go build -o "$bin" ./cmd/scatter
work=$(mktemp -d "${TMPDIR:-/var/tmp}/scatter-perfile-XXXXXX")
mkdir -p "$work/mnt" "$work/data" "$work/cfg"
echo "benchmark passphrase" > "$work/pw"
port=$((20000 + $$ % 20000))
extra=
[ "${FUSE:-0}" = 1 ] && extra="-debug-fuse -log-level debug"
SCATTER_TEST_CHEAP_KDF=1 "$bin" mount -password-file "$work/pw" -ready-file "$work/ready" \
	-data "$work/data" -config "$work/cfg" -local-donors "$donors" -k 8 -m 4 \
	-local-quota 2G -pprof "127.0.0.1:$port" $extra "$work/mnt" > "$work/stdout" 2> "$work/log" &
pid=$!
cleanup() {
	kill -TERM $pid 2>/dev/null || true
	wait $pid 2>/dev/null || true
	umount "$work/mnt" 2>/dev/null || true
	[ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
while ! grep -qs "$work/mnt" "$work/ready"; do
	kill -0 $pid 2>/dev/null || { cat "$work/log"; exit 1; }
	sleep 0.2
done
cpu() { awk '{print ($14 + $15) / 100}' /proc/$pid/stat; }  # user+sys clock ticks at USER_HZ 100
files=$(find "$src" -type f | wc -l)
lines0=$(wc -l < "$work/log")
if [ "${PPROF:-0}" = 1 ]; then
	curl -s -o "$out/cpu.pprof" "http://127.0.0.1:$port/debug/pprof/profile?seconds=${PPROF_SECONDS:-60}" &
	curlpid=$!
fi
c0=$(cpu)
t0=$(date +%s.%N)
rsync -a "$src/" "$work/mnt/src/"
t1=$(date +%s.%N)
c1=$(cpu)
# The files above the inline limit upload after close(2): scatter sync waits for them (and
# takes a metadata snapshot), so c2 counts the whole cost of the files.
"$bin" sync -data "$work/data" > /dev/null
c2=$(cpu)
if [ "${PPROF:-0}" = 1 ]; then
	wait $curlpid || true
	curl -s -o "$out/heap.pprof" "http://127.0.0.1:$port/debug/pprof/heap"
fi
awk -v f="$files" -v c0="$c0" -v c1="$c1" -v c2="$c2" -v t0="$t0" -v t1="$t1" -v l="$(uptime | sed 's/.*average: //')" 'BEGIN {
	printf "rsync -a of %d files: %.1f s wall, mount CPU %.2f s (%.2f ms per file), %.2f s until scatter sync returned (%.2f ms per file); load %s\n",
		f, t1-t0, c1-c0, (c1-c0)*1000/f, c2-c0, (c2-c0)*1000/f, l }'
grep VmHWM /proc/$pid/status
if [ "${FUSE:-0}" = 1 ]; then
	tail -n +$((lines0 + 1)) "$work/log" | grep -o 'rx [0-9]*: [A-Z_]*' | awk -v f="$files" '{n[$3]++; t++}
		END { for (o in n) printf "%-12s %7d %6.2f per file\n", o, n[o], n[o]/f; printf "%-12s %7d %6.2f per file\n", "total", t, t/f }' | sort -k2 -rn
fi
