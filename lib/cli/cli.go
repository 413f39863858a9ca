// Package cli is what the pcp commands share: the common flags and their
// environment variables, the status printer, and the one mapping from
// errors to exit statuses.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/pcp-dev/pcp/lib/auth"
	"github.com/pcp-dev/pcp/lib/pipe"
	"github.com/pcp-dev/pcp/lib/rendezvous"
	"github.com/pcp-dev/pcp/lib/route"
)

// Exit statuses, the same for every command.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitAuth        = 3
	ExitNotFound    = 4
	ExitIntegrity   = 5
	ExitInterrupted = 130
)

// UsageError is a mistake in how the command was called (exit 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error to the documented exit status.
func ExitCode(err error) int {
	var (
		usage     *UsageError
		guesses   *rendezvous.TooManyGuessesError
		notFound  *rendezvous.NotFoundError
		integrity *pipe.IntegrityError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &usage):
		return ExitUsage
	case errors.Is(err, auth.ErrWrongCode), errors.As(err, &guesses):
		return ExitAuth
	case errors.As(err, &notFound):
		return ExitNotFound
	case errors.As(err, &integrity):
		return ExitIntegrity
	}
	return ExitFailure
}

// Main runs a command with a context that ends on SIGINT or SIGTERM, prints
// its error as "prog: error: …" on stderr and returns the exit status.
// SIGPIPE is ignored: a write to a closed pipe fails with EPIPE, which the
// command reports (and tells its peer), instead of killing it silently.
// With PCP_STATS set to a duration, a line about the process's resources
// goes to stderr at that interval (see StatsVariable). While it runs, the
// garbage collector runs at least once a second when garbage trickles in
// (see collectEvery), so that a long transfer's memory stays flat.
func Main(prog string, args []string, stderr io.Writer, run func(ctx context.Context, args []string) error) int {
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if v := os.Getenv(StatsVariable); v != "" {
		interval, err := time.ParseDuration(v)
		if err != nil || interval <= 0 {
			fmt.Fprintf(stderr, "%s: error: %s=%q: want a positive duration such as 1s\n", prog, StatsVariable, v)
			return ExitUsage
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go reportStats(sctx, prog, stderr, interval)
	}
	cctx, stopCollecting := context.WithCancel(ctx)
	defer stopCollecting()
	go collectSteadily(cctx, collectEvery, collectAfter)
	err := run(ctx, args)
	if errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	if err != nil && ctx.Err() != nil {
		err = errInterrupted
	}
	if errors.Is(err, ErrDeclined) {
		// The user's own choice: said, but not as an error.
		fmt.Fprintf(stderr, "%s: declined; nothing was received\n", prog)
		return ExitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", prog, err)
		if hint := hintFor(err); hint != "" {
			fmt.Fprintf(stderr, "%s: hint: %s\n", prog, hint)
		}
	}
	return ExitCode(err)
}

// ErrDeclined is a receiver's no to the offer: the sender is told
// "declined", and the command exits 1 without calling it an error.
var ErrDeclined = errors.New("declined")

// errInterrupted ends a command stopped by SIGINT or SIGTERM: it says only
// "interrupted" (not Go's "context canceled") and matches context.Canceled,
// hence exit 130.
var errInterrupted error = interrupted{}

type interrupted struct{}

func (interrupted) Error() string        { return "interrupted" }
func (interrupted) Is(target error) bool { return target == context.Canceled }

func hintFor(err error) string {
	var notFound *rendezvous.NotFoundError
	switch {
	case errors.As(err, new(*route.NoDirectError)):
		return "--allow-relay lets the data go through a relay that allows it; `pcp node --relay-data 0 --relay-duration 0` on a public host is such a relay, named on both sides with --relay ADDR"
	case errors.Is(err, auth.ErrWrongCode):
		return "check the code with the sender; every wrong try counts against a limit"
	case errors.As(err, &notFound) && notFound.OnlyNotPcp():
		return ""
	case errors.As(err, &notFound) && notFound.Announcing:
		return "--timeout gives the peer more time"
	case errors.As(err, &notFound):
		return "is the other side still waiting? --timeout gives more time; -v shows each discovery step"
	}
	return ""
}
