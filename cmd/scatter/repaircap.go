package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/scatterfs/scatter/crypt"
)

type repairCapOptions struct {
	driveFlags
	out string
}

func runRepairCap(_ context.Context, args []string, stdout io.Writer) error {
	var o repairCapOptions
	fs := newFlagSet("repair-cap", "[flags]", `Print the drive's repair capability (asks for the passphrase): what an always-on
helper needs to keep the drive's fragments alive while your devices are off, with
scatter daemon -repair FILE. It holds the fragment owner key and the key of the
drive's repair manifest: no file names, no contents, no drive key. But whoever
holds it can delete the drive's fragments or stop renewing them, which destroys
the drive's data: give it only to a helper you trust, and store it with mode 0600.
What it reveals: docs/security.md, "The repair capability".`,
		"scatter repair-cap -o repair.cap",
		"scatter repair-cap -password-file pw | ssh helper 'umask 077; cat > repair.cap'")
	o.register(fs)
	fs.StringVar(&o.out, "o", "", "write the capability to this `file` (mode 0600) instead of standard output")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := o.openSecret()
	if err != nil {
		return err
	}
	text := s.Keys().RepairCap().Text() + "\n"
	if o.out == "" {
		fmt.Fprint(os.Stderr, "The repair capability can delete this drive's fragments: store it with mode 0600.\n")
		_, err := io.WriteString(stdout, text)
		return err
	}
	f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wrote the repair capability to %s (mode 0600). It can delete this drive's fragments:\n"+
		"hand it only to a helper you trust, who runs scatter daemon -repair %s.\n", o.out, o.out)
	return nil
}

// readRepairCap reads a capability file as repair-cap writes it. A file others can read
// is refused: the capability can destroy the drive's data.
func readRepairCap(path string) (crypt.RepairCap, error) {
	st, err := os.Stat(path)
	if err != nil {
		return crypt.RepairCap{}, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return crypt.RepairCap{}, fmt.Errorf("repair capability %s has mode %v: make it 0600 (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return crypt.RepairCap{}, err
	}
	c, err := crypt.ParseRepairCap(strings.TrimSpace(string(b)))
	if err != nil {
		return crypt.RepairCap{}, fmt.Errorf("repair capability %s: %w", path, err)
	}
	return c, nil
}
