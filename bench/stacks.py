#!/usr/bin/env python3
# bench/stacks.py reads `perf report -g folded,0,caller,count` and attributes each stack's
# samples to the first of a few coarse activities whose frame appears in it.
import sys, collections
buckets = [
  ("GC (background mark workers, assists, sweeping)", ["gcBgMarkWorker", "gcAssist", "bgsweep", "gcDrain", "runtime.GC", "scavenge"]),
  ("store Put: file create, write, rename", ["store.(*Store).Put"]),
  ("store Get: file read, BLAKE3 check", ["store.(*Store).Get"]),
  ("fragment server: reading the PUT payload", ["dht.(*Server).put"]),
  ("fragment server: other", ["dht.(*Server)"]),
  ("yamux receive: TLS decrypt, socket read", ["(*Session).recv"]),
  ("yamux send: TLS encrypt, socket write", ["(*Session).send"]),
  ("DHT", ["go-libp2p-kad-dht", "kbucket"]),
  ("sysmon and idle scheduler (sleeps, epoll, futex)", ["runtime.sysmon", "runtime.findRunnable", "runtime.stopm"]),
  ("scheduler: other", ["runtime.schedule", "runtime.mcall", "runtime.park_m"]),
]
cnt = collections.Counter(); tot = 0
for line in sys.stdin:
    p = line.split(" ", 1)
    if len(p) != 2 or not p[0].isdigit(): continue
    n, stack = int(p[0]), p[1]
    tot += n
    for name, pats in buckets:
        if any(x in stack for x in pats):
            cnt[name] += n; break
    else:
        cnt["other"] += n
for k, v in cnt.most_common():
    print(f"{100*v/tot:5.1f}%  {k}")
