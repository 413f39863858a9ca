package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/gologshim"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/pcp-dev/pcp/lib/code"
	"github.com/pcp-dev/pcp/lib/discovery"
	"github.com/pcp-dev/pcp/lib/node"
	"github.com/pcp-dev/pcp/lib/session"
	"github.com/pcp-dev/pcp/lib/status"
)

const envAnnotation = "env"

// Flags are the options shared by the pcp commands. Each command registers
// the groups it uses.
type Flags struct {
	Code      string
	CodeFile  string
	Words     int
	Bootstrap []string
	Discovery string
	Timeout   time.Duration
	Listen    []string
	Identity  string
	Peers     []string
	Relays    []string
	Verbose   bool
	Quiet     bool

	// AllowRelay is --allow-relay; askRelay is set when the command asks
	// for consent to relay (AddTransfer), prog names it in the question.
	AllowRelay bool
	// Reconnect is --reconnect: how long the two sides of a broken
	// transfer try to reach each other again.
	Reconnect time.Duration
	askRelay  bool
	prog      string
	// StdinIsData tells that the command reads its data from stdin: then
	// no question is asked there.
	StdinIsData bool
	// Receives tells that the command receives a transfer, so that its host
	// is made for it (session.Config.Receiver).
	Receives bool

	fromEnv   map[string]bool   // flags that took their value from the environment
	sources   map[string]string // where flags not left at their default took their value
	generates bool              // the command generates codes (AddWords)
	finding   bool              // the command finds its peer (FindCode)
	screen    *screen           // stderr, when it is a terminal (Logger)
	live      bool              // show a live status line on screen
	session   *Session          // the command's session (Start)
}

// NewFlagSet returns a GNU-style flag set whose usage text starts with
// synopsis and lists the flags.
func NewFlagSet(name, synopsis string, out io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(out)
	fs.SortFlags = false
	fs.Bool("version", false, "print the version (module, commit, Go) and exit")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s\n\nOptions:\n%s", synopsis, fs.FlagUsages())
	}
	return fs
}

func withEnv(fs *pflag.FlagSet, name, env string) {
	fs.SetAnnotation(name, envAnnotation, []string{env})
	f := fs.Lookup(name)
	f.Usage += " (env " + env + ")"
}

// AddCode registers --code and --code-file; argument tells whether the
// command also takes the code as its CODE argument (else it generates one
// when none is given).
func (f *Flags) AddCode(fs *pflag.FlagSet, argument bool) {
	usage := "use this code instead of a generated one: visible to other users in the process list; on a shared machine use PCP_CODE or --code-file"
	if argument {
		usage = "the code, instead of the CODE argument: as visible as it to other users in the process list; on a shared machine use PCP_CODE or --code-file"
	}
	fs.StringVar(&f.Code, "code", "", usage)
	withEnv(fs, "code", "PCP_CODE")
	fs.StringVar(&f.CodeFile, "code-file", "", "read the code from the first line of `FILE`")
	FileValue(fs, "code-file")
}

// AddWords registers --words, for a command that generates codes.
func (f *Flags) AddWords(fs *pflag.FlagSet) {
	f.generates = true
	fs.IntVar(&f.Words, "words", code.DefaultWords, fmt.Sprintf("number of words in a generated code (at least %d)", code.MinWords))
}

// AddPeer registers --peer.
func (f *Flags) AddPeer(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.Peers, "peer", nil, "dial this full multiaddr (/ip4/…/tcp/…/p2p/ID) instead of discovering the peer; repeatable")
}

// AddBootstrap registers --bootstrap (PCP_BOOTSTRAP).
func (f *Flags) AddBootstrap(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.Bootstrap, "bootstrap", nil, "DHT bootstrap peers, comma-separated full multiaddrs (default: the public IPFS bootstrap peers)")
	withEnv(fs, "bootstrap", "PCP_BOOTSTRAP")
}

// AddNetwork registers the discovery, network and verbosity flags, with
// defaultTimeout for --timeout (0: no limit).
func (f *Flags) AddNetwork(fs *pflag.FlagSet, defaultTimeout time.Duration) {
	fs.StringVar(&f.Discovery, "discovery", "mdns,dht", "how to find the peer: mdns, dht or mdns,dht")
	withEnv(fs, "discovery", "PCP_DISCOVERY")
	Values(fs, "discovery", "mdns,dht", "mdns", "dht")
	f.AddBootstrap(fs)
	fs.DurationVar(&f.Timeout, "timeout", defaultTimeout, "give up when no peer is found within this `duration` (e.g. 30s, 5m; 0: wait forever)")
	withEnv(fs, "timeout", "PCP_TIMEOUT")
	fs.StringSliceVar(&f.Listen, "listen", nil, "listen on these multiaddrs, comma-separated (default: all interfaces, random ports, TCP and QUIC)")
	fs.StringVar(&f.Identity, "identity", "", "keep the peer's key in `FILE` (created if missing) for a stable peer ID")
	FileValue(fs, "identity")
	fs.StringSliceVar(&f.Relays, "relay", nil, "behind a NAT, be reachable through this relay (full multiaddr) instead of relays found in the DHT; repeatable")
	withEnv(fs, "relay", "PCP_RELAY")
	Configurable(fs, "discovery", "bootstrap", "timeout", "relay")
	f.AddVerbosity(fs)
}

// AddTransfer registers --allow-relay and --reconnect for a command (prog)
// that moves data.
func (f *Flags) AddTransfer(fs *pflag.FlagSet, prog string) {
	f.askRelay, f.prog = true, prog
	fs.BoolVar(&f.AllowRelay, "allow-relay", false, "when no direct connection can be made, send the data through a relay that allows it (else asks on a terminal, unless stdin carries the data)")
	fs.DurationVar(&f.Reconnect, "reconnect", session.DefaultRejoinWindow, "when the connection breaks during the transfer, try this `duration` to reach the peer again and go on where it stopped (0: give up at once)")
	withEnv(fs, "reconnect", "PCP_RECONNECT")
	Configurable(fs, "allow-relay", "reconnect")
}

// allowRelay answers whether data may go through relay: yes with
// --allow-relay, else the user's answer on a terminal, else no.
func (f *Flags) allowRelay(ctx context.Context, relay peer.ID, reason string) (bool, error) {
	if f.AllowRelay {
		return true, nil
	}
	if f.StdinIsData || !CanAsk() {
		return false, nil
	}
	q := fmt.Sprintf("no direct connection to the peer (%s); send the data through relay %s?", reason, node.ShortID(relay))
	ok, err := Ask(ctx, f.prog, q, "--allow-relay")
	var usage *UsageError
	if errors.As(err, &usage) {
		return false, nil
	}
	return ok, err
}

// AddVerbosity registers -v and -q.
func (f *Flags) AddVerbosity(fs *pflag.FlagSet) {
	fs.BoolVarP(&f.Verbose, "verbose", "v", false, "show each phase and how long it took")
	quiet := "print only errors"
	if f.generates {
		quiet += " (a generated code is still printed: the peer needs it)"
	}
	fs.BoolVarP(&f.Quiet, "quiet", "q", false, quiet)
}

// Parse parses args, then fills every flag that was not given from its
// environment variable, then from the config file (ConfigPath, keys
// ConfigKeys): a flag beats its variable, which beats the file.
func (f *Flags) Parse(fs *pflag.FlagSet, args []string, getenv func(string) string) error {
	f.fromEnv = map[string]bool{}
	f.sources = map[string]string{}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return &UsageError{Err: err}
	}
	if v, _ := fs.GetBool("version"); v {
		printVersion(fs.Output(), versionName(fs))
		return pflag.ErrHelp // done, and exit 0
	}
	fs.Visit(func(fl *pflag.Flag) { f.sources[fl.Name] = "the flag --" + fl.Name })
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		env := fl.Annotations[envAnnotation]
		if err != nil || fl.Changed || len(env) == 0 {
			return
		}
		if v := getenv(env[0]); v != "" {
			if serr := fs.Set(fl.Name, v); serr != nil {
				err = Usagef("%s=%q: %v", env[0], v, serr)
			}
			f.fromEnv[fl.Name] = true
			f.sources[fl.Name] = "environment " + env[0]
		}
	})
	if err == nil {
		err = f.applyConfig(fs, getenv)
	}
	if fl := fs.Lookup("peer"); err == nil && fl != nil && fl.Changed && len(f.Peers) == 0 {
		err = Usagef("--peer: empty address")
	}
	return err
}

// ReadCode returns the code from the CODE argument, --code or --code-file,
// whichever was given (giving more than one is an error), else from
// PCP_CODE. ok is false when there is none.
func (f *Flags) ReadCode(args []string) (c code.Code, ok bool, err error) {
	var sources []string
	if len(args) > 0 {
		sources = append(sources, strings.Join(args, " "))
	}
	if f.Code != "" && !f.fromEnv["code"] {
		sources = append(sources, f.Code)
	}
	if f.CodeFile != "" {
		s, err := firstLine(f.CodeFile)
		if err != nil {
			return code.Code{}, false, Usagef("--code-file: %v", err)
		}
		sources = append(sources, s)
	}
	if len(sources) == 0 && f.Code != "" {
		sources = append(sources, f.Code) // PCP_CODE: the variable yields to any flag or argument
	}
	switch len(sources) {
	case 0:
		return code.Code{}, false, nil
	case 1:
	default:
		return code.Code{}, false, Usagef("the code was given more than once (argument, --code, --code-file): give one")
	}
	c, err = code.Parse(sources[0])
	if err != nil {
		return code.Code{}, false, &UsageError{Err: err}
	}
	return c, true, nil
}

func firstLine(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer file.Close()
	s := bufio.NewScanner(io.LimitReader(file, 4096))
	s.Scan()
	return s.Text(), s.Err()
}

// Session builds the session configuration from the flags.
func (f *Flags) Session(log status.Logger) (session.Config, error) {
	cfg := session.Config{Listen: f.Listen, IdentityFile: f.Identity, Receiver: f.Receives, Log: log}
	for _, a := range f.Listen {
		if _, err := ma.NewMultiaddr(a); err != nil {
			return cfg, &UsageError{Err: fmt.Errorf("--listen %q: %w", a, err)}
		}
	}
	var err error
	if cfg.MDNS, cfg.DHT, err = discovery.ParseMethods(f.Discovery); err != nil {
		return cfg, &UsageError{Err: fmt.Errorf("%s: %w", f.Named("discovery"), err)}
	}
	if len(f.Bootstrap) > 0 {
		if cfg.Bootstrap, err = discovery.ParseAddrs(f.Bootstrap); err != nil {
			return cfg, &UsageError{Err: fmt.Errorf("--bootstrap: %w", err)}
		}
	} else {
		cfg.Bootstrap = discovery.DefaultBootstrap()
	}
	if len(f.Peers) > 0 {
		if cfg.Peers, err = discovery.ParseAddrs(f.Peers); err != nil {
			return cfg, &UsageError{Err: fmt.Errorf("--peer: %w", err)}
		}
	}
	if len(f.Relays) > 0 {
		if cfg.Relays, err = discovery.ParseAddrs(f.Relays); err != nil {
			return cfg, &UsageError{Err: fmt.Errorf("--relay: %w", err)}
		}
	}
	if f.askRelay {
		cfg.AllowRelay = f.allowRelay
	}
	if f.Timeout < 0 {
		return cfg, Usagef("--timeout must not be negative")
	}
	if f.Reconnect < 0 {
		return cfg, Usagef("%s must not be negative", f.Named("reconnect"))
	}
	cfg.Rejoin = f.Reconnect
	return cfg, nil
}

// Logger returns the status printer for the flags' verbosity: lines go to w
// as "prog: …". It also sets the process's library loggers (see
// quietLibraries): a command calls it once, before it starts a host.
func (f *Flags) Logger(prog string, w io.Writer) status.Logger {
	quietLibraries(f.Verbose, w)
	if f.prog == "" {
		f.prog = prog
	}
	print := func(format string, args ...any) {
		fmt.Fprintf(w, prog+": "+format+"\n", args...)
	}
	if file, ok := w.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		f.screen = &screen{w: w}
		// A live status line, only where status lines are shown at all.
		f.live = !f.Quiet
		print = func(format string, args ...any) {
			f.screen.println(prog + ": " + fmt.Sprintf(format, args...))
		}
	}
	var l status.Logger
	if !f.Quiet {
		l.Info = print
	}
	if f.Verbose {
		l.Info, l.Debug = print, print
	}
	return l
}

// AnnounceCode returns the code for a command that announces: the one given
// (a CODE argument is not accepted), or a new one of --words words, printed
// on w with the command the peer should run (printed even with -q: the peer
// needs it).
func (f *Flags) AnnounceCode(prog, peerCommand string, w io.Writer) (code.Code, error) {
	c, given, err := f.ReadCode(nil)
	if err != nil {
		return c, err
	}
	if !given {
		if c, err = f.NewCode(); err != nil {
			return c, err
		}
		fmt.Fprintf(w, "%s: code: %s\n%s: on the other side: %s %s\n", prog, c, prog, peerCommand, c)
	}
	if f.session != nil && f.live {
		f.session.live(f, "waiting for the peer")
	}
	return c, nil
}

// NewCode generates a code of --words words.
func (f *Flags) NewCode() (code.Code, error) {
	c, err := code.Generate(f.Words, nil)
	if err != nil {
		return c, &UsageError{Err: err}
	}
	return c, nil
}

// FindCode returns the code for a command that finds: from args, --code,
// --code-file or PCP_CODE; with none, it is asked for on a terminal (not
// echoed to the process list or the shell's history), and else a usage
// error.
func (f *Flags) FindCode(ctx context.Context, prog string, args []string) (code.Code, error) {
	f.finding = true
	c, given, err := f.ReadCode(args)
	if err != nil || given {
		return c, err
	}
	if !CanAsk() {
		return c, Usagef("missing CODE (the argument, --code, --code-file or PCP_CODE)")
	}
	line, err := AskLine(ctx, prog, "code (the words the sender printed):")
	if err != nil {
		return c, err
	}
	if c, err = code.Parse(line); err != nil {
		return c, &UsageError{Err: err}
	}
	return c, nil
}

// Start starts a session configured by the flags.
//
// On a terminal, a finder's search shows a live status line from here
// ("looking for the sender… 12s"), an announcer's wait from the code on
// (see AnnounceCode), until a peer proved the code or the session closes.
func (f *Flags) Start(ctx context.Context, log status.Logger) (*Session, error) {
	cfg, err := f.Session(log)
	if err != nil {
		return nil, err
	}
	s := &Session{stop: func() {}}
	cfg.Met = s.endLive
	ss, err := session.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.Session = ss
	f.session = s
	if f.finding && f.live {
		s.live(f, "looking for the sender ("+f.Discovery+")")
	}
	return s, nil
}

// Session is a running session of a command, with its live status line.
type Session struct {
	*session.Session
	mu   sync.Mutex
	stop func() // ends the live status line
}

// live shows what… and the time since on the terminal, if there is one to
// show it on, until the peers meet or the session closes.
func (s *Session) live(f *Flags, what string) {
	if f.screen == nil {
		return
	}
	start := time.Now()
	stop := f.screen.startLive(func() string {
		return fmt.Sprintf("%s: %s… %v", f.prog, what, time.Since(start).Round(time.Second))
	})
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
}

// endLive ends the live status line, if one is shown.
func (s *Session) endLive() {
	s.mu.Lock()
	stop := s.stop
	s.mu.Unlock()
	stop()
}

// Close ends the live status line and the session.
func (s *Session) Close() error {
	s.endLive()
	return s.Session.Close()
}

// quietLibraries keeps the libraries' own loggers off stderr unless
// verbose: go-libp2p's (its slog loggers: "start failed" lines from fx,
// with module paths), go-log's (the DHT's) and the standard logger
// (zeroconf's "[zeroconf] no suitable IPv4 interface"). pcp says what
// matters in its own words; -v shows them all. GOLOG_LOG_LEVEL, when set,
// still decides for go-libp2p and go-log.
func quietLibraries(verbose bool, w io.Writer) {
	if verbose {
		log.SetOutput(w)
		return
	}
	log.SetOutput(io.Discard)
	if os.Getenv("GOLOG_LOG_LEVEL") == "" {
		gologshim.SetDefaultHandler(slog.DiscardHandler)
		golog.SetLogLevel("*", "fatal")
	}
}
