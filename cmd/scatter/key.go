package main

import (
	"context"
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
	fs := newFlagSet("init", "[flags]")
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
		fs := newFlagSet("key export", "[flags]")
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
		fs := newFlagSet("key import", "[flags] < recovery-key.txt")
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
	default:
		return fmt.Errorf("%w: unknown key command %q (want export or import)", errUsage, args[0])
	}
}
