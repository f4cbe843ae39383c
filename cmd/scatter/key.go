package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/scatterfs/scatter/crypt"
)

// kdfParams are the Argon2id parameters new key files get. Tests lower them through
// SCATTER_TEST_CHEAP_KDF so that each init does not cost a second of CPU; the parameters
// are stored in the file, so such a file still opens anywhere.
func kdfParams() crypt.KDFParams {
	if os.Getenv("SCATTER_TEST_CHEAP_KDF") == "1" {
		return crypt.KDFParams{Time: 1, MemoryKiB: 8 << 10, Threads: 1}
	}
	return crypt.DefaultKDFParams
}

type initOptions struct{ driveFlags }

func runInit(_ context.Context, args []string, stdout io.Writer) error {
	var o initOptions
	fs := newFlagSet("init", "[flags]", `Create a drive: a new random drive key, stored in the config directory under a
passphrase (Argon2id), and printed once as a recovery key. Refuses to replace an
existing drive key. (scatter mount creates a drive by itself on first use.)`,
		"scatter init",
		"scatter init -password-file ~/.config/scatter/passphrase",
		"SCATTER_PASSWORD=... scatter init -config /etc/scatter")
	o.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := crypt.NewSecret()
	if err != nil {
		return err
	}
	if err := o.writeSecret(s, kdfParams()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Created a drive; its key is in %s, protected by your passphrase.\n\n", o.keyFile())
	printRecoveryKey(stdout, s)
	return nil
}

func printRecoveryKey(w io.Writer, s crypt.Secret) {
	fmt.Fprintf(w, "Recovery key (write it down and keep it safe: with it anyone can read the drive,\nwithout it and the passphrase nobody can, not even you):\n\n    %s\n\n", s.RecoveryKey())
}

type keyOptions struct{ driveFlags }

func runKey(_ context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want scatter key export or scatter key import", errUsage)
	}
	var o keyOptions
	switch args[0] {
	case "export":
		fs := newFlagSet("key export", "[flags]", `Print the drive key as a recovery key (asks for the passphrase). With it and
scatter key import, another device opens the same drive.`,
			"scatter key export",
			"scatter key export -password-file pw > recovery-key.txt")
		o.register(fs)
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		s, err := o.openSecret()
		if err != nil {
			return err
		}
		printRecoveryKey(stdout, s)
		return nil
	case "import":
		fs := newFlagSet("key import", "[flags] < recovery-key.txt", `Read a recovery key on standard input and store it as this device's drive key
under a new passphrase. Refuses to replace an existing drive key.`,
			"scatter key import < recovery-key.txt",
			"scatter key import -config /tmp/other-device < recovery-key.txt")
		o.register(fs)
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		s, err := readRecoveryKey(os.Stdin)
		if err != nil {
			return err
		}
		if err := o.writeSecret(s, kdfParams()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Imported the drive key into %s.\n", o.keyFile())
		return nil
	case "-h", "--help", "help":
		fmt.Fprint(os.Stderr, "usage: scatter key export [flags] | scatter key import [flags] < recovery-key.txt\n\n"+
			"Export the drive key as a recovery key, or import one on another device.\n"+
			"scatter key export -h and scatter key import -h show their flags and examples.\n")
		return flag.ErrHelp
	default:
		return fmt.Errorf("%w: unknown key command %q (want export or import)", errUsage, args[0])
	}
}
