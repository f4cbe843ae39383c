# bench/cpu-categories.awk sums a flat CPU profile into coarse categories, for
# docs/benchmarks.md. Input lines look like "  1.23%  [.] symbol" ([k] for kernel
# symbols), as printed by perf report --sort sym -g none, or made by bench/peers.sh from
# go tool pprof -top. Output: percent per category.
/%/ {
	p = $1; sub(/%/, "", p); k = $2; s = $3
	c = "other Go (libp2p, yamux, DHT, scatter)"
	if (k == "[k]" || s ~ /Syscall6|^syscall\.|RawSyscall/) c = "kernel: TCP loopback, ext4, syscalls"
	else if (s ~ /blake3/) c = "BLAKE3 (fragment IDs)"
	else if (s ~ /gcmAes|aes\/gcm|ghash|aes\.encryptBlock/) c = "AES-GCM (TLS records, chunk seal)"
	else if (s ~ /reedsolomon|galMul/) c = "Reed-Solomon"
	else if (s ~ /memmove|memclr/) c = "memmove/memclr"
	else if (s ~ /^runtime\.(gc|scan|mark|sweep|greyobject|findObject|tryDefer|wbBuf|heapBits|bulkBarrier|malloc|newobject|makeslice|growslice|nextFreeFast|refill|madvise)|spanSet|moveInlineMarks|internal\/runtime\/gc|sweepLocked|mspan|mcache|mheap|pageAlloc|runtime\.step$|unwinder|findfunc|pcvalue|getStackMap|funcInfo|stkframe|typePointers|extractHeapBits|writeHeapBits/) c = "Go GC and allocator"
	else if (s ~ /^runtime\.|internal\/runtime\/|^sync\.|internal\/sync/) c = "Go scheduler, locks, timers"
	sum[c] += p
}
END { for (c in sum) printf "%6.1f%%  %s\n", sum[c], c }
