package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Every flag can also be set in the config file and in the environment. Precedence, from
// strongest: the command line, then the environment (SCATTER_<FLAG>, upper case, '-' as
// '_'), then the config file (config.toml in the config directory), then the defaults.
// Each layer is applied to the verb's flag.FlagSet in turn with Set, weakest first, so a
// flag's own parser checks a value from any layer the same way.

// configFileName is the config file's name in the config directory.
const configFileName = "config.toml"

// globalKeys may stand at the top of the config file, outside any [verb] table; they
// apply to every verb that has the flag. Everything else goes in the verb's table.
var globalKeys = []string{"data", "password-file", "log-level", "p2p-log-level"}

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return "SCATTER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// configDir returns the config directory a command line asks for: -config on it, else
// $SCATTER_CONFIG, else the XDG default.
func configDirOf(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"-config", "--config"} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	if d := os.Getenv(envName("config")); d != "" {
		return d
	}
	return defaultConfigDir()
}

// applyLayers sets fs's flags from the config file and then the environment, before the
// command line is parsed into fs.
func applyLayers(fs *flag.FlagSet, args []string) error {
	verb := strings.Fields(fs.Name())[1] // "scatter key export" reads the [key] table
	path := filepath.Join(configDirOf(args), configFileName)
	cfg, err := readConfig(path)
	if err != nil {
		return err
	}
	if err := cfg.apply(fs, verb); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	replaceLists(fs)
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %w", envName(f.Name), err))
			}
		}
	})
	replaceLists(fs)
	return errors.Join(errs...)
}

// replaceLists makes the next Set of every list flag replace the values a weaker layer
// gave, instead of adding to them.
func replaceLists(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if l, ok := f.Value.(*listFlag); ok {
			l.replace = true
		}
	})
}

// config is a parsed config file: top-level keys and one table per verb.
type config struct {
	global map[string]any
	verbs  map[string]map[string]any
}

// readConfig reads and checks the shape of the config file at path; a missing file is an
// empty config.
func readConfig(path string) (config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return config{}, nil
	}
	if err != nil {
		return config{}, err
	}
	return parseConfig(path, b)
}

func parseConfig(path string, b []byte) (config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(b), &raw); err != nil {
		return config{}, fmt.Errorf("%s: %w", path, err)
	}
	c := config{global: map[string]any{}, verbs: map[string]map[string]any{}}
	for k, v := range raw {
		if t, ok := v.(map[string]any); ok {
			if !slices.ContainsFunc(verbs, func(v verb) bool { return v.name == k }) {
				return config{}, fmt.Errorf("%s: [%s]: no such command", path, k)
			}
			c.verbs[k] = t
			continue
		}
		if !slices.Contains(globalKeys, k) {
			return config{}, fmt.Errorf("%s: %q is not a top-level key (top level: %s; other settings go in a [command] table)",
				path, k, strings.Join(globalKeys, ", "))
		}
		c.global[k] = v
	}
	return c, nil
}

// apply sets fs's flags from the top-level keys it has and from the verb's table, which
// must name only flags of the verb.
func (c config) apply(fs *flag.FlagSet, verb string) error {
	set := func(where, k string, v any) error {
		vals, err := tomlStrings(v)
		if err != nil {
			return fmt.Errorf("%s%s: %w", where, k, err)
		}
		if _, isList := fs.Lookup(k).Value.(*listFlag); !isList && len(vals) != 1 {
			return fmt.Errorf("%s%s: want one value, not a list", where, k)
		}
		for _, s := range vals {
			if err := fs.Set(k, s); err != nil {
				return fmt.Errorf("%s%s: %w", where, k, err)
			}
		}
		return nil
	}
	for _, k := range sortedKeys(c.global) {
		if fs.Lookup(k) != nil {
			if err := set("", k, c.global[k]); err != nil {
				return err
			}
		}
	}
	t := c.verbs[verb]
	for _, k := range sortedKeys(t) {
		if k == "config" || fs.Lookup(k) == nil {
			return fmt.Errorf("[%s] %s: scatter %s has no such setting", verb, k, verb)
		}
		if err := set("["+verb+"] ", k, t[k]); err != nil {
			return err
		}
	}
	return nil
}

// tomlStrings turns a TOML value into the strings a flag's Set takes.
func tomlStrings(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case int64:
		return []string{strconv.FormatInt(v, 10)}, nil
	case bool:
		return []string{strconv.FormatBool(v)}, nil
	case []any:
		var out []string
		for _, e := range v {
			s, err := tomlStrings(e)
			if err != nil || len(s) != 1 {
				return nil, fmt.Errorf("lists hold strings, numbers or booleans")
			}
			out = append(out, s...)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unsupported value %v of type %T (want a string, integer, boolean or list)", v, v)
	}
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
