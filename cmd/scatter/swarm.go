package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/scatterfs/scatter/dht"
)

type swarmOptions struct {
	configDir string
	dir       string
	donors    int
	quota     sizeFlag
	readyFile string
	logFlags
}

func runSwarm(ctx context.Context, args []string, stdout io.Writer) error {
	o := swarmOptions{quota: 1 << 30}
	fs := newFlagSet("swarm", "[flags]", `Run N donors in this process, listening on 127.0.0.1 only, for experiments and
tests: the data stays on this machine. Prints the address to join with
-bootstrap. A second start with the same -dir brings back the same donors and
fragments. Runs until SIGINT or SIGTERM.`,
		"scatter swarm -n 12",
		"scatter mount -bootstrap $(head -1 swarm.addrs) ~/Scatter   # after: scatter swarm -ready-file swarm.addrs")
	registerConfigDir(fs, &o.configDir)
	o.logFlags.register(fs)
	fs.StringVar(&o.dir, "dir", defaultDataDir("swarm"), "`directory` holding one data directory per donor")
	fs.IntVar(&o.donors, "n", 14, "number of donors")
	fs.Var(&o.quota, "quota", "disk space each donor donates (e.g. 1G)")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the donors' addresses to this `file` once all serve")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := o.logFlags.setup()
	if err != nil {
		return err
	}
	if o.donors <= 0 || o.donors > 256 {
		return fmt.Errorf("%w: -n must be 1..256", errUsage)
	}
	if o.quota <= 0 {
		return fmt.Errorf("%w: -quota must be above 0", errUsage)
	}
	l, err := dht.StartLocal(ctx, dht.LocalConfig{
		Dir: o.dir, Donors: o.donors, Quota: int64(o.quota), Logger: log,
	})
	if err != nil {
		return err
	}
	boot := l.Bootstrap()
	fmt.Fprintf(stdout, "%d donors on 127.0.0.1, %s each, in %s. Data stays on this machine.\n",
		o.donors, formatSize(int64(o.quota)), o.dir)
	fmt.Fprintf(stdout, "join with: -bootstrap %s\n", boot[0])
	if o.readyFile != "" {
		if err := writeFileAtomic(o.readyFile, []byte(strings.Join(boot, "\n")+"\n")); err != nil {
			return err
		}
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return l.Close()
}
