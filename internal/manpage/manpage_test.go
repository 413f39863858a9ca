package manpage

import (
	"strings"
	"testing"

	"github.com/pcp-dev/pcp/lib/cli"
)

// The flags of a made-up command with two subcommands, as its binary
// would describe them.
var tool = []cli.CommandFlags{
	{Command: "tool send", Flags: []cli.Flag{
		{Name: "code", Value: true},
		{Name: "verbose", Shorthand: "v"},
		{Name: "help", Shorthand: "h"},
	}},
	{Command: "tool recv", Flags: []cli.Flag{
		{Name: "code", Value: true},
		{Name: "output", Shorthand: "o", Value: true},
		{Name: "help", Shorthand: "h"},
	}},
}

// page is a source with OPTIONS holding options.
func page(options string) string {
	return "# TOOL 1 2026-12-04 tool \"User Commands\"\n\n# NAME\n\ntool - a tool\n\n# SYNOPSIS\n\n**tool send**\\\n**tool recv**\n\n# OPTIONS\n\n" +
		options + "\n# SEE ALSO\n\n**pcp**(1)\n"
}

const complete = `<!-- flags of: tool send, tool recv -->

--code CODE
:   The code.

--help
:   Help.

### send

<!-- flags of: tool send -->

--verbose
:   Say more.

### recv

<!-- flags of: tool recv -->

--output DIR
:   Where.
`

// A page that documents every flag once gets each term written from the
// flag set, short form included, and its roff has minus signs.
func TestBuild(t *testing.T) {
	roff, err := Build("tool.1", []byte(page(complete)), tool)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		".TH TOOL 1 2026-12-04 tool \"User Commands\"\n",
		".TP\n\\fB\\-\\-code\\fP \\fICODE\\fP\n",
		".TP\n\\fB\\-v\\fP, \\fB\\-\\-verbose\\fP\n",
		".TP\n\\fB\\-o\\fP, \\fB\\-\\-output\\fP \\fIDIR\\fP\n",
		".TP\n\\fB\\-h\\fP, \\fB\\-\\-help\\fP\n",
		"\\fBtool send\\fP\n.br\n", // the backslash at the end of a line breaks it
		".SS send\n",
		".SH SEE ALSO\n",
	} {
		if !strings.Contains(string(roff), want) {
			t.Errorf("the page lacks %q:\n%s", want, roff)
		}
	}
	if strings.Contains(string(roff), "<!--") {
		t.Errorf("a marker is left in the page:\n%s", roff)
	}
}

// Every way a source can disagree with the flags fails the build, with
// the line and the flag.
func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, options, want string
	}{
		{"undocumented flag", strings.Replace(complete, "--verbose\n:   Say more.\n", "", 1), "does not document --verbose of tool send"},
		{"no such flag", complete + "\n--colour\n:   Colours.\n", "tool.1.md:36: --colour is documented, but tool recv has no such flag"},
		{"flag of another command", strings.Replace(complete, "--output DIR", "--verbose", 1), "--verbose is documented, but tool recv has no such flag"},
		{"documented twice", complete + "\n<!-- flags of: tool send -->\n\n--code CODE\n:   Again.\n", "--code of tool send is documented twice (line 16)"},
		{"value missing", strings.Replace(complete, "--code CODE", "--code", 1), "--code of tool send takes a value: name it"},
		{"value of a switch", strings.Replace(complete, "--verbose\n", "--verbose LEVEL\n", 1), "--verbose of tool send is a switch"},
		{"short form written", strings.Replace(complete, "--verbose\n", "-v, --verbose\n", 1), "the short one comes from the flag set"},
		{"no marker", strings.Replace(complete, "<!-- flags of: tool send, tool recv -->", "", 1), "before a <!-- flags of: COMMAND, ... --> marker"},
		{"unknown command", strings.Replace(complete, "tool send, tool recv", "tool send, tool get", 1), `"tool get" is not a command of this page (tool send, tool recv)`},
		{"not a term", strings.Replace(complete, "--verbose\n", "--verbose or not\n", 1), "is not a flag's term"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build("tool.1", []byte(page(tc.options)), tool)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := Build("tool.1", []byte("# TOOL 1\n\n# NAME\n\ntool\n"), tool); err == nil || !strings.Contains(err.Error(), "no OPTIONS section") {
		t.Errorf("a page without OPTIONS: %v", err)
	}
	if _, err := Build("proto.7", []byte(page(complete)), nil); err == nil {
		t.Error("a page of no command built with flags markers")
	}
}
