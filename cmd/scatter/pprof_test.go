package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestPprofRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "192.0.2.1:0", "[::]:0", "127.0.0.1"} {
		if _, _, err := servePprof(addr); !errors.Is(err, errUsage) {
			t.Errorf("servePprof(%q) = %v, want a usage error", addr, err)
		}
	}
}

func TestPprofServesHeap(t *testing.T) {
	stop, addr, err := servePprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		if path != "/debug/pprof/" && !strings.Contains(string(body), "servePprof") && !strings.Contains(string(body), "runtime") {
			t.Errorf("GET %s: no stacks in %.200q", path, body)
		}
	}
}
