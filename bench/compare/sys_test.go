package main

import (
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"256M": 256 << 20, "4G": 4 << 30, "10G": 10 << 30, "1k": 1 << 10, "512": 512, "2GiB": 2 << 30, "3MB": 3 << 20,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "0", "1.5G", "1X", "99999999999T"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4G", "256M", "1", "0", "9223372036854775807", "8T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n <= 0 {
			t.Fatalf("parseSize(%q) = %d without an error", s, n)
		}
	})
}

// A real /proc/PID/stat line, its command name holding a space and a parenthesis.
const statLine = "4242 (scat ter)) S 1 4242 4242 0 -1 4194560 12345 0 0 0 250 75 0 0 20 0 31 0 987654 2000000000 50000 " +
	"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"

func TestParseStatCPU(t *testing.T) {
	got, err := parseStatCPU([]byte(statLine))
	if err != nil || got != 3.25 {
		t.Fatalf("parseStatCPU = %v, %v; want 3.25 s (250 + 75 ticks)", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14", "1 (x) S 1 2 3 4 5 6 7 8 9 u s 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte(statLine))
	f.Add([]byte("1 ((() R 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseStatCPU(b); err == nil && v < 0 {
			t.Fatalf("negative CPU time %v", v)
		}
	})
}
