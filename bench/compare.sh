#!/bin/sh
# bench/compare.sh measures scatter's mounted drive side by side with a plain directory,
# gocryptfs and an rclone crypt mount (--vfs-cache-mode writes): sequential write, cold and
# warm read of a SIZE file, rsync -a of Go's source tree, creating and listing many empty
# files; for scatter also peak local disk beyond the donors' stores, peak RSS and CPU per GB
# (bench/compare/main.go). It prints one table with ratios to the plain directory, and exits
# non-zero if a file reads back different or scatter's local disk goes beyond DISK_BOUND.
# Needs root. See docs/benchmarks.md, "Side by side".
#
#   bench/compare.sh                                  # SIZE=4G, all four filesystems
#   SIZE=10G FS=plain,scatter bench/compare.sh        # the 10 GiB file
#   SIZE=1G PERF=1 bench/compare.sh                   # + perf profiles of the mount
#
# Environment: SIZE (4G), FS (plain,scatter,gocryptfs,rclone), OUT (results, logs and
# profiles; /tmp/scatter-compare), WORK (where the filesystems live; a new directory in
# ${TMPDIR:-/var/tmp}), FILES (10000), GOSRC (the tree to rsync; $(go env GOROOT)/src),
# STAGING and CACHE (256M each), DISK_BOUND (300M), DONORS (12), SCATTER_BIN (a scatter
# binary to use instead of building cmd/scatter), PERF=1, KEEP=1 (keep WORK).
set -eu
cd "$(dirname "$0")/.."
size=${SIZE:-4G}
fs=${FS:-plain,scatter,gocryptfs,rclone}
out=${OUT:-/tmp/scatter-compare}
mkdir -p "$out"

# Debian packages for what FS names and the tools every run uses.
need=
has() { case ",$fs," in *",$1,"*) return 0 ;; esac; return 1; }
has gocryptfs && ! command -v gocryptfs >/dev/null 2>&1 && need="$need gocryptfs"
has rclone && ! command -v rclone >/dev/null 2>&1 && need="$need rclone"
command -v rsync >/dev/null 2>&1 || need="$need rsync"
command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 || need="$need fuse3"
[ "${PERF:-0}" = 1 ] && ! command -v perf >/dev/null 2>&1 && need="$need linux-perf"
if [ -n "$need" ]; then
	echo "installing:$need"
	apt-get update -qq
	apt-cache policy $need
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi

if [ -n "${SCATTER_BIN:-}" ]; then
	bin=$SCATTER_BIN
else
	bin=$out/scatter
	go build -o "$bin" ./cmd/scatter
fi
go build -o "$out/compare" ./bench/compare
work=${WORK:-$(mktemp -d "${TMPDIR:-/var/tmp}/scatter-compare-XXXXXX")}
perf=false
[ "${PERF:-0}" = 1 ] && perf=true
keep=false
[ "${KEEP:-0}" = 1 ] && keep=true

status=0
"$out/compare" -size "$size" -fs "$fs" -scatter "$bin" -work "$work" -out "$out" \
	-gosrc "${GOSRC:-$(go env GOROOT)/src}" -files "${FILES:-10000}" -donors "${DONORS:-12}" \
	-staging "${STAGING:-256M}" -cache "${CACHE:-256M}" -disk-bound "${DISK_BOUND:-300M}" \
	-perf="$perf" -keep="$keep" > "$out/table.txt" || status=$?
cat "$out/table.txt"
[ "$keep" = true ] || rm -rf "$work"

if [ "$perf" = true ]; then
	for what in write read; do
		data=$out/perf-$what.data
		[ -f "$data" ] || continue
		report() { perf report -i "$data" --no-children --sort sym --stdio "$@" 2>/dev/null; }
		report -g none | grep -v '^#' | grep -v '^$' | head -60 > "$out/perf-$what-top.txt"
		report -g none | awk -f bench/cpu-categories.awk | sort -rn > "$out/perf-$what-categories.txt"
		report -g folded,0,caller,count | python3 bench/stacks.py > "$out/perf-$what-activities.txt" || true
	done
fi
echo "results in $out"
exit $status
