// Package manpage builds a man page from its markdown source. The OPTIONS
// section of the source describes each flag in prose, under markers that
// say whose flags they are; the flags themselves come from the flag sets
// the commands parse (cli.CommandFlags). Build fails when the source
// documents a flag that a command lacks, misses one that it has, or gives
// a value to a switch or none to a flag that takes one, and it writes each
// flag's term (-v, --verbose; --code CODE) itself. go-md2man then turns
// the markdown into roff.
//
// The source is the markdown of go-md2man: the first heading is the title
// line (.TH), a line that ends in a backslash breaks there, and fenced
// code blocks are indented examples; headings of level 1 and 2 are
// sections (.SH), of level 3 subsections (.SS). In OPTIONS:
//
//	<!-- flags of: pcp send, pcp receive -->
//
//	--code CODE
//	:   The code ...
//
// documents --code of both commands; a flag of several commands is
// documented once, under a marker that names them all.
package manpage

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/pcp-dev/pcp/lib/cli"
)

var (
	markerRE = regexp.MustCompile(`^<!--\s*flags of:\s*(.*?)\s*-->$`)
	// A term: the flag's long name, then the name of its value if it
	// takes one.
	termRE = regexp.MustCompile(`^(-[[:alnum:]], )?--([[:alnum:]][[:alnum:]-]*)( [A-Z][A-Z0-9_-]*)?$`)
)

// Build returns the roff of the man page name (such as "pcp.1") from its
// markdown source src, with the OPTIONS section checked against and its
// terms written from commands, the flags of the commands the page
// documents (none for a page without options).
func Build(name string, src []byte, commands []cli.CommandFlags) ([]byte, error) {
	md, err := expand(name, string(src), commands)
	if err != nil {
		return nil, err
	}
	roff := string(md2man.Render([]byte(md)))
	// Examples are indented, as in hand-written pages.
	roff = strings.ReplaceAll(roff, "\n.EX\n", "\n.RS 4\n.EX\n")
	roff = strings.ReplaceAll(roff, "\n.EE\n", "\n.EE\n.RE\n")
	roff = minusSigns(roff)
	header := fmt.Sprintf(".\\\" %s: generated from %s.md by internal/mangen (make); edit that file.\n", name, name)
	return []byte(header + roff), nil
}

// minusSigns writes each "-" of the text of roff as "\-": a plain "-" is
// a hyphen to groff, which looks like a minus sign but is another
// character, so that an option copied from the page would not work.
// Request lines (".TH", ".SH") are left alone.
func minusSigns(roff string) string {
	lines := strings.Split(roff, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			continue
		}
		line = strings.ReplaceAll(line, `\-`, "\x00")
		line = strings.ReplaceAll(line, "-", `\-`)
		lines[i] = strings.ReplaceAll(line, "\x00", `\-`)
	}
	return strings.Join(lines, "\n")
}

// documented records where a flag of a command is documented.
type documented map[string]map[string]int // command → flag → line

// expand checks the OPTIONS section of src against commands and returns
// src with the flags' terms written out and its line breaks in the form
// go-md2man knows.
func expand(name, src string, commands []cli.CommandFlags) (string, error) {
	byName := map[string]cli.CommandFlags{}
	for _, c := range commands {
		byName[c.Command] = c
	}
	lines := strings.Split(src, "\n")
	var (
		inCode, inOptions, sawOptions bool
		group                         []cli.CommandFlags
		seen                          = documented{}
	)
	for i, line := range lines {
		at := fmt.Sprintf("%s.md:%d", name, i+1)
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		if inCode {
			continue
		}
		if heading, ok := section(line); ok {
			inOptions = heading == "OPTIONS"
			sawOptions = sawOptions || inOptions
			group = nil
		}
		if m := markerRE.FindStringSubmatch(line); m != nil {
			if !inOptions {
				return "", fmt.Errorf("%s: a flags marker outside OPTIONS", at)
			}
			group = nil
			for _, c := range strings.Split(m[1], ",") {
				cmd, ok := byName[strings.TrimSpace(c)]
				if !ok {
					return "", fmt.Errorf("%s: %q is not a command of this page (%s)", at, strings.TrimSpace(c), strings.Join(namesOf(commands), ", "))
				}
				group = append(group, cmd)
			}
			continue
		}
		if strings.HasSuffix(line, `\`) && !strings.HasSuffix(line, `\\`) {
			lines[i] = strings.TrimSuffix(line, `\`) + "  " // a hard break
			continue
		}
		if !inOptions || i+1 == len(lines) || !strings.HasPrefix(lines[i+1], ":") || !strings.HasPrefix(line, "-") {
			continue
		}
		term, err := termOf(line, group, commands, seen, i+1)
		if err != nil {
			return "", fmt.Errorf("%s: %w", at, err)
		}
		lines[i] = term
	}
	if len(commands) > 0 && !sawOptions {
		return "", fmt.Errorf("%s.md: no OPTIONS section for %s", name, strings.Join(namesOf(commands), ", "))
	}
	var missing []string
	for _, c := range commands {
		for _, fl := range c.Flags {
			if _, ok := seen[c.Command][fl.Name]; !ok {
				missing = append(missing, fmt.Sprintf("--%s of %s", fl.Name, c.Command))
			}
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%s.md: OPTIONS does not document %s", name, strings.Join(missing, ", "))
	}
	return strings.Join(lines, "\n"), nil
}

// termOf checks the term line of a definition in OPTIONS against the
// flags of group (or of the page's only command) and returns the term as
// it is printed; seen records it.
func termOf(line string, group, commands []cli.CommandFlags, seen documented, lineNo int) (string, error) {
	m := termRE.FindStringSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("%q is not a flag's term: write --NAME, or --NAME VALUE for a flag that takes one", line)
	}
	if m[1] != "" {
		return "", fmt.Errorf("%q: write the long name alone; the short one comes from the flag set", line)
	}
	name, value := m[2], strings.TrimSpace(m[3])
	if len(group) == 0 && len(commands) == 1 {
		group = commands // a page of one command needs no marker
	}
	if len(group) == 0 {
		return "", fmt.Errorf("--%s is documented before a <!-- flags of: COMMAND, ... --> marker says whose it is", name)
	}
	var flag cli.Flag
	for j, c := range group {
		i := slices.IndexFunc(c.Flags, func(f cli.Flag) bool { return f.Name == name })
		if i < 0 {
			return "", fmt.Errorf("--%s is documented, but %s has no such flag", name, c.Command)
		}
		if prev, ok := seen[c.Command][name]; ok {
			return "", fmt.Errorf("--%s of %s is documented twice (line %d)", name, c.Command, prev)
		}
		if seen[c.Command] == nil {
			seen[c.Command] = map[string]int{}
		}
		seen[c.Command][name] = lineNo
		if j > 0 && c.Flags[i].Shorthand != flag.Shorthand {
			return "", fmt.Errorf("--%s has the short form %q in %s but %q in %s: document them apart", name, flag.Shorthand, group[0].Command, c.Flags[i].Shorthand, c.Command)
		}
		flag = c.Flags[i]
		if flag.Value != (value != "") {
			if flag.Value {
				return "", fmt.Errorf("--%s of %s takes a value: name it (--%s VALUE)", name, c.Command, name)
			}
			return "", fmt.Errorf("--%s of %s is a switch: it takes no value %s", name, c.Command, value)
		}
	}
	var b bytes.Buffer
	if flag.Shorthand != "" {
		fmt.Fprintf(&b, "**-%s**, ", flag.Shorthand)
	}
	fmt.Fprintf(&b, "**--%s**", name)
	if value != "" {
		fmt.Fprintf(&b, " *%s*", value)
	}
	return b.String(), nil
}

// section returns the heading of a line that starts a section (.SH): go-md2man
// makes one of a heading of level 1 or 2; level 3 is a subsection (.SS).
func section(line string) (string, bool) {
	for _, prefix := range []string{"# ", "## "} {
		if h, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(h), true
		}
	}
	return "", false
}

// namesOf are the names of commands.
func namesOf(commands []cli.CommandFlags) []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.Command)
	}
	return names
}
