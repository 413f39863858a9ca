package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// folders offers folders only, each with a slash, hidden ones only when
// asked for, and those inside a folder typed so far.
func TestFolders(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, d := range []string{"photos", "pictures", ".hidden", "photos/2026"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "photo.txt"), nil, 0o644)
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"photos/", "pictures/"}},
		{"ph", []string{"photos/"}},
		{".", []string{".hidden/"}},
		{"photos/", []string{"photos/2026/"}},
		{"nowhere/", nil},
	} {
		if got := folders(tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("folders(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

// An unknown shell is a usage error; a known one gets a script for the
// command named.
func TestCompletionScripts(t *testing.T) {
	fs := NewFlagSet("x", "x", &bytes.Buffer{})
	fs.String("discovery", "", "")
	Values(fs, "discovery", "mdns", "dht")
	cmd := Command{Name: "pcp-test", Flags: fs}
	var ue *UsageError
	if err := Complete(cmd, []string{"completion", "tcsh"}, &bytes.Buffer{}); !errors.As(err, &ue) {
		t.Fatalf("completion tcsh: %v, want a usage error", err)
	}
	for _, shell := range Shells {
		var out bytes.Buffer
		if err := Complete(cmd, []string{"completion", shell}, &out); err != nil || !strings.Contains(out.String(), "pcp-test") {
			t.Errorf("completion %s: %v, script of %d bytes without the command's name", shell, err, out.Len())
		}
	}
	var out bytes.Buffer
	if err := Complete(cmd, []string{"__complete", "--discovery", ""}, &out); err != nil || !strings.HasPrefix(out.String(), "mdns\ndht\n") {
		t.Errorf("__complete --discovery: %v, %q", err, out.String())
	}
	if !IsCompletion([]string{"completion"}) || IsCompletion([]string{"send"}) || IsCompletion(nil) {
		t.Error("IsCompletion is wrong")
	}
}

// __flags describes each command that has flags, named after its parents,
// with pflag's own --help and without hidden flags.
func TestDescribe(t *testing.T) {
	send := NewFlagSet("send", "x send", &bytes.Buffer{})
	send.StringP("output", "o", "", "where")
	send.Bool("yes", false, "accept")
	send.Bool("secret", false, "")
	send.MarkHidden("secret")
	cmd := Command{Name: "x", Sub: []Command{{Name: "send", Flags: send}}}
	var out bytes.Buffer
	if !IsCompletion([]string{DescribeRequest}) {
		t.Fatal("IsCompletion(__flags) is false")
	}
	if err := Complete(cmd, []string{DescribeRequest}, &out); err != nil {
		t.Fatal(err)
	}
	var got []CommandFlags
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	want := []CommandFlags{{Command: "x send", Flags: []Flag{
		{Name: "version", Usage: "print the version (module, commit, Go) and exit"}, // NewFlagSet's
		{Name: "output", Shorthand: "o", Value: true, Usage: "where"},
		{Name: "yes", Usage: "accept"},
		{Name: "help", Shorthand: "h", Usage: "print the options and exit"},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("__flags = %+v, want %+v", got, want)
	}
}
