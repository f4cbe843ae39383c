package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// servePprof serves Go's runtime profiles (net/http/pprof) on addr until the returned
// closer is called, and returns the address it listens on. The handlers sit on their own
// mux: the package also registers them on http.DefaultServeMux, which scatter never
// serves, so -metrics does not expose them.
// addr must name a loopback IP: a profile shows file names being written and stacks
// holding drive data, and the endpoints take no credentials.
func servePprof(addr string) (func() error, string, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, "", fmt.Errorf("%w: -pprof: %v", errUsage, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves heap, allocs, goroutine, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return serveHTTP("-pprof", addr, mux)
}

// serveHTTP serves mux on addr until the returned closer is called (which shuts the
// server down, waiting up to 5 s for requests in flight), and returns the address it
// listens on. flag names the option in errors. There is no WriteTimeout: a CPU profile
// or trace streams for as long as ?seconds= asks.
func serveHTTP(flag, addr string, mux *http.ServeMux) (func() error, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", flag, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(ctx)
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}, ln.Addr().String(), nil
}

// checkLoopback refuses an address whose host is not a loopback IP literal. Names such as
// "localhost" are refused too: what they resolve to is up to /etc/hosts.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)", addr)
	}
	return nil
}

// servePprof starts -pprof if set; closers get the server's stop.
func (o *mountOptions) servePprof(closers *[]func() error, stdout io.Writer) error {
	if o.pprof == "" {
		return nil
	}
	stop, addr, err := servePprof(o.pprof)
	if err != nil {
		return err
	}
	*closers = append(*closers, stop)
	fmt.Fprintf(stdout, "Profiles on http://%s/debug/pprof/\n", addr)
	return nil
}
