package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// CanAsk reports whether a question can be asked: stdin and stderr are both
// a terminal.
func CanAsk() bool {
	return term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stderr.Fd()))
}

// Ask asks a yes/no question on stderr and reads the answer from stdin;
// anything but y or yes is no. Without a terminal it fails with a usage
// error that names flag, the way to answer yes in advance.
func Ask(ctx context.Context, prog, question, flag string) (bool, error) {
	if !CanAsk() {
		return false, Usagef("%s: no terminal to ask on; pass %s to accept", question, flag)
	}
	a, err := AskLine(ctx, prog, question+" [y/N]")
	a = strings.ToLower(a)
	return err == nil && (a == "y" || a == "yes"), err
}

// AskLine asks for one line of text on stderr and reads it from stdin,
// which must be a terminal (see CanAsk).
func AskLine(ctx context.Context, prog, prompt string) (string, error) {
	fmt.Fprintf(os.Stderr, "%s: %s ", prog, prompt)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		answer <- strings.TrimSpace(line)
	}()
	select {
	case a := <-answer:
		return a, nil
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr)
		return "", ctx.Err()
	}
}
