package main

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"512", 512, true}, {"64K", 64 << 10, true}, {"256M", 256 << 20, true},
		{"10G", 10 << 30, true}, {"2T", 2 << 40, true}, {"1GiB", 1 << 30, true}, {"1gb", 1 << 30, true},
		{" 3m ", 3 << 20, true},
		{"", 0, false}, {"-1", 0, false}, {"1X", 0, false}, {"G", 0, false}, {"9999999999T", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, n := range []int64{0, 1, 1023, 1024, 3 << 20, 10 << 30} {
		if got, err := parseSize(formatSize(n)); err != nil || got != n {
			t.Errorf("formatSize(%d) = %q does not parse back: %d, %v", n, formatSize(n), got, err)
		}
	}
}
