package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/scatterfs/scatter/crypt"
)

// passwordEnv names the environment variable that can hold the drive passphrase, for
// scripts and services. A password file (-password-file) is preferred: environment
// variables leak into child processes and /proc.
const passwordEnv = "SCATTER_PASSWORD"

// driveFlags are the flags every verb that opens the drive's key shares.
type driveFlags struct {
	configDir    string
	passwordFile string
}

func (d *driveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.configDir, "config", defaultConfigDir(), "configuration `directory` holding the drive key")
	fs.StringVar(&d.passwordFile, "password-file", "", "read the drive passphrase from this `file` (else $"+passwordEnv+", else a prompt)")
}

func (d *driveFlags) keyFile() string { return filepath.Join(d.configDir, "drive.key") }

func defaultConfigDir() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "scatter")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".config", "scatter")
	}
	return ".scatter"
}

// errNoPassphrase is returned when no passphrase source is available.
var errNoPassphrase = errors.New("no passphrase: use -password-file, $" + passwordEnv + " or run in a terminal")

// passphrase returns the drive passphrase from the password file, the environment or a
// terminal prompt, in that order. With confirm, a prompted passphrase is asked twice.
func (d *driveFlags) passphrase(prompt string, confirm bool) ([]byte, error) {
	if d.passwordFile != "" {
		b, err := os.ReadFile(d.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		// One trailing newline is the file's, not the passphrase's.
		b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
		if len(b) == 0 {
			return nil, fmt.Errorf("password file %s is empty", d.passwordFile)
		}
		return b, nil
	}
	if p, ok := os.LookupEnv(passwordEnv); ok {
		if p == "" {
			return nil, fmt.Errorf("$%s is empty", passwordEnv)
		}
		return []byte(p), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, errNoPassphrase
	}
	fmt.Fprint(os.Stderr, prompt)
	p, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("reading passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Repeat the passphrase: ")
		q, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase: %w", err)
		}
		if !bytes.Equal(p, q) {
			return nil, errors.New("the two passphrases differ")
		}
	}
	return p, nil
}

// errNoDrive says the config directory holds no drive key.
var errNoDrive = errors.New("no drive here")

// openSecret reads the drive key file and unwraps the secret with the passphrase.
func (d *driveFlags) openSecret() (crypt.Secret, error) {
	data, err := os.ReadFile(d.keyFile())
	if errors.Is(err, os.ErrNotExist) {
		return crypt.Secret{}, fmt.Errorf("%w: %s does not exist (create a drive with scatter init)", errNoDrive, d.keyFile())
	}
	if err != nil {
		return crypt.Secret{}, err
	}
	pass, err := d.passphrase("Drive passphrase: ", false)
	if err != nil {
		return crypt.Secret{}, err
	}
	s, err := crypt.DecodeKeyFile(data, pass)
	if err != nil {
		return crypt.Secret{}, fmt.Errorf("%s: %w", d.keyFile(), err)
	}
	return s, nil
}

// writeSecret wraps s under a new passphrase and writes the key file, refusing to replace
// an existing one.
func (d *driveFlags) writeSecret(s crypt.Secret, params crypt.KDFParams) error {
	if _, err := os.Stat(d.keyFile()); err == nil {
		return fmt.Errorf("%s already exists: refusing to overwrite a drive key (move it away first)", d.keyFile())
	}
	pass, err := d.passphrase("New drive passphrase: ", true)
	if err != nil {
		return err
	}
	data, err := crypt.EncodeKeyFile(s, pass, params)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.configDir, 0o700); err != nil {
		return err
	}
	return writeFileExcl(d.keyFile(), data)
}

// writeFileExcl writes data to a new file at path, mode 0600, durably: through a
// temporary file, fsync and a hard link that fails if path exists, so a crash leaves
// either no key file or a whole one, and a concurrent init cannot replace it.
func writeFileExcl(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite a drive key", path)
		}
		return err
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		defer dir.Close()
		return dir.Sync()
	}
	return nil
}

// readRecoveryKey reads a recovery key from r: all of its text, whatever the layout.
func readRecoveryKey(r io.Reader) (crypt.Secret, error) {
	var b strings.Builder
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(r, 4096))
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte(' ')
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return crypt.Secret{}, err
	}
	s, err := crypt.ParseRecoveryKey(b.String())
	if err == nil {
		return s, nil
	}
	// The output of scatter key export: explanations around the key on a line of its own.
	for _, l := range lines {
		if s, lerr := crypt.ParseRecoveryKey(l); lerr == nil {
			return s, nil
		}
	}
	return crypt.Secret{}, err
}
