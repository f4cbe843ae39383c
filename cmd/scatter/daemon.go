package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/scatterfs/scatter/dht"
	"github.com/scatterfs/scatter/dht/store"
)

type daemonOptions struct {
	dir       string
	quota     sizeFlag
	bandwidth sizeFlag
	listen    listFlag
	bootstrap listFlag
	readyFile string
	verbose   bool
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func defaultDataDir(sub string) string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "scatter", sub)
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "scatter", sub)
	}
	return filepath.Join(".scatter", sub)
}

func runDaemon(ctx context.Context, args []string, stdout io.Writer) error {
	o := daemonOptions{quota: 10 << 30}
	fs := newFlagSet("daemon", "[flags]")
	fs.StringVar(&o.dir, "dir", defaultDataDir("donor"), "data `directory`: identity key and fragment store")
	fs.Var(&o.quota, "quota", "most disk space to donate (e.g. 500M, 20G)")
	fs.Var(&o.bandwidth, "bandwidth", "cap on fragment bytes per second served and received (e.g. 10M); 0 for none")
	fs.Var(&o.listen, "listen", "multiaddr to listen on (repeatable; default /ip4/127.0.0.1/tcp/0)")
	fs.Var(&o.bootstrap, "bootstrap", "full multiaddr of a peer to join through (repeatable)")
	fs.StringVar(&o.readyFile, "ready-file", "", "write the node's addresses to this `file` once it serves (for scripts and tests)")
	fs.BoolVar(&o.verbose, "v", false, "verbose logs")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.quota <= 0 {
		return fmt.Errorf("%w: -quota must be above 0", errUsage)
	}
	if o.bandwidth > 1<<31-1 {
		return fmt.Errorf("%w: -bandwidth above 2G/s", errUsage)
	}
	n, err := dht.New(ctx, dht.Config{
		DataDir:     o.dir,
		ListenAddrs: o.listen,
		Bootstrap:   o.bootstrap,
		Mode:        dht.ModeServer,
		Store:       store.Config{Quota: int64(o.quota), Logger: logger(o.verbose)},
		Server:      dht.ServerConfig{Bandwidth: int(o.bandwidth), Logger: logger(o.verbose)},
		Logger:      logger(o.verbose),
	})
	if err != nil {
		return err
	}
	addrs := multiaddrLines(n)
	fmt.Fprintf(stdout, "scatter donor %s, donating %s in %s\n", n.ID(), formatSize(int64(o.quota)), o.dir)
	for _, a := range addrs {
		fmt.Fprintln(stdout, "  ", a)
	}
	if o.readyFile != "" {
		if err := writeFileAtomic(o.readyFile, []byte(strings.Join(addrs, "\n")+"\n")); err != nil {
			return errors.Join(err, n.Close())
		}
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return n.Close()
}

func multiaddrLines(n *dht.Node) []string {
	var out []string
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// writeFileAtomic writes data to path through a temporary file and a rename, so a reader
// polling for path never sees it half written.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

var _ flag.Value = (*listFlag)(nil)
