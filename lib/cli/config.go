package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// ConfigKeys are the settings a config file may hold, each named as its
// flag. Never a code: a file that is read on every run is no place for one.
var ConfigKeys = []string{"bootstrap", "relay", "discovery", "timeout", "output", "compress", "allow-relay", "reconnect"}

// configAnnotation marks the flags a config file may set (Configurable).
const configAnnotation = "config"

// Configurable lets the config file set the named flags of fs (each one of
// ConfigKeys). Other flags, such as pcp node's --bootstrap, it never sets.
func Configurable(fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		fs.SetAnnotation(name, configAnnotation, []string{"yes"})
	}
}

// configFile is a parsed config file: "key = value" lines, blank lines and
// "#" comments.
type configFile struct {
	path   string
	values map[string]string
	lines  map[string]int
}

// ConfigPath is where the config file is: $XDG_CONFIG_HOME/pcp/config, or
// ~/.config/pcp/config; "" when neither variable is set.
func ConfigPath(getenv func(string) string) string {
	if dir := getenv("XDG_CONFIG_HOME"); dir != "" {
		return filepath.Join(dir, "pcp", "config")
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".config", "pcp", "config")
	}
	return ""
}

// readConfig reads the config file at path. A missing file is an empty
// one; a line that is not "key = value" with a known key is a usage error
// that names the line.
func readConfig(path string) (*configFile, error) {
	c := &configFile{path: path, values: map[string]string{}, lines: map[string]int{}}
	if path == "" {
		return c, nil
	}
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok || key == "":
			return nil, Usagef("%s:%d: want key = value, got %q", path, n, line)
		case key == "code" || key == "code-file":
			return nil, Usagef("%s:%d: a code never goes in the config file (use --code-file or PCP_CODE)", path, n)
		case !slices.Contains(ConfigKeys, key):
			return nil, Usagef("%s:%d: unknown key %q (known: %s)", path, n, key, strings.Join(ConfigKeys, ", "))
		}
		c.values[key], c.lines[key] = value, n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// apply sets every configurable flag of fs that the file names and that
// was given neither as a flag nor in the environment; keys of other
// commands' flags are left alone. It records where each value came from in sources.
func (c *configFile) apply(fs *pflag.FlagSet, sources map[string]string) error {
	for _, key := range ConfigKeys {
		value, ok := c.values[key]
		fl := fs.Lookup(key)
		if !ok || fl == nil || fl.Annotations[configAnnotation] == nil || sources[key] != "" {
			continue
		}
		if err := fs.Set(key, value); err != nil {
			return Usagef("%s:%d: %s = %q: %v", c.path, c.lines[key], key, value, err)
		}
		sources[key] = fmt.Sprintf("config file %s:%d", c.path, c.lines[key])
	}
	return nil
}

// applyConfig fills the flags of fs that were given neither on the command
// line nor in the environment from the config file.
func (f *Flags) applyConfig(fs *pflag.FlagSet, getenv func(string) string) error {
	c, err := readConfig(ConfigPath(getenv))
	if err != nil {
		return err
	}
	return c.apply(fs, f.sources)
}

// Source says where the value of the flag name came from: "the flag
// --timeout", "environment PCP_TIMEOUT", "config file PATH:LINE", or
// "default".
func (f *Flags) Source(name string) string {
	if s := f.sources[name]; s != "" {
		return s
	}
	return "default"
}

// Named names the setting name for a message about its value: "--timeout"
// when it came from the command line (or is the default), else where it
// came from ("PCP_TIMEOUT", "timeout (config file PATH:LINE)").
func (f *Flags) Named(name string) string {
	src := f.sources[name]
	switch {
	case strings.HasPrefix(src, "environment "):
		return strings.TrimPrefix(src, "environment ")
	case strings.HasPrefix(src, "config file "):
		return name + " (" + src + ")"
	}
	return "--" + name
}
