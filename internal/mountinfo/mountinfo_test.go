package mountinfo

import (
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	const info = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 0:32 / /home/a\040b/Scatter rw,nosuid shared:9 - fuse.scatter scatter rw,user_id=0
37 22 0:33 / /mnt/x rw - tmpfs tmpfs rw
38 37 0:34 / /mnt/x rw - fuse.scatter scatter rw
`
	for dir, want := range map[string]string{
		"/home/a b/Scatter": "fuse.scatter", "/mnt/x": "fuse.scatter", "/mnt": "", "/": "ext4", "/home/a\\040b/Scatter": "",
	} {
		got, err := Find(strings.NewReader(info), dir)
		if err != nil || got != want {
			t.Errorf("Find(%q) = %q, %v; want %q", dir, got, err, want)
		}
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("got %q", got)
	}
	if got := unescape(`/tmp/x\9`); !strings.HasSuffix(got, `\9`) {
		t.Errorf("a short escape must stay as it is: got %q", got)
	}
}

func TestMountedRoot(t *testing.T) {
	if !Mounted("/") {
		t.Error("/ is not reported as mounted")
	}
}

func FuzzFind(f *testing.F) {
	f.Add("36 22 0:32 / /a\\040b rw - fuse.scatter scatter rw\n", "/a b")
	f.Add("\\\\\\0 - -\n", "/")
	f.Fuzz(func(t *testing.T, info, dir string) {
		_, _ = Find(strings.NewReader(info), dir)
	})
}
