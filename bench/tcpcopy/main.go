//go:build unix

// Command tcpcopy is the benchmark's helper (bench/bench.sh), standard
// library only:
//
//	tcpcopy recv ADDR                 accept one TCP connection on ADDR, copy it to stdout
//	tcpcopy send [-wait D] ADDR       dial ADDR (retrying up to D) and copy stdin to it
//	tcpcopy run -o FILE -- CMD ARG... run CMD with stdio passed through; write its
//	                                  peak RSS, wall and CPU time and exit status to FILE
//	tcpcopy dur DURATION...           print Go durations ("1.234s", "259ms") in seconds
//	tcpcopy tree DIR FILES            make DIR holding FILES text files of 1-4 KiB,
//	                                  100 to a folder (d0000/f000.txt, ...)
//	tcpcopy gen BYTES                 write BYTES pseudo-random bytes to stdout, fast
//
// It builds on Unix only (it reads ru_maxrss); bench.sh runs on Linux.
//
// recv and send copy through one 256 KiB buffer each, read by read and write
// by write, so that the data crosses user space as it does in pcp-pipe (no
// sendfile or splice). recv reports on stderr, from accept to EOF:
//
//	tcpcopy: received N bytes in S s
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

const bufSize = 256 << 10

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "recv":
		err = recv(os.Args[2:])
	case "send":
		err = send(os.Args[2:])
	case "run":
		var code int
		code, err = run(os.Args[2:])
		if err == nil {
			os.Exit(code)
		}
	case "dur":
		err = dur(os.Args[2:])
	case "tree":
		err = tree(os.Args[2:])
	case "gen":
		err = gen(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcpcopy %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tcpcopy recv ADDR | send [-wait D] ADDR | run -o FILE -- CMD [ARG...] | dur DURATION... | tree DIR FILES | gen BYTES")
	os.Exit(2)
}

// copyBuf copies src to dst through one buffer of bufSize bytes, with plain
// Read and Write calls only.
func copyBuf(dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, bufSize)
	var n int64
	for {
		r, rerr := src.Read(buf)
		if r > 0 {
			w, werr := dst.Write(buf[:r])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
			if w != r {
				return n, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

func recv(args []string) error {
	if len(args) != 1 {
		usage()
	}
	l, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := l.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	n, err := copyBuf(os.Stdout, c)
	elapsed := time.Since(start)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	fmt.Fprintf(os.Stderr, "tcpcopy: received %d bytes in %.6f s\n", n, elapsed.Seconds())
	return nil
}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	wait := fs.Duration("wait", 10*time.Second, "keep dialing for this long")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	deadline := time.Now().Add(*wait)
	var c net.Conn
	for {
		var err error
		c, err = net.DialTimeout("tcp", fs.Arg(0), time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	start := time.Now()
	n, err := copyBuf(c, os.Stdin)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	// The receiver closes once it has read everything: wait for that, so
	// that this command's exit means the data arrived.
	c.SetReadDeadline(time.Now().Add(*wait))
	if _, err := io.Copy(io.Discard, c); err != nil {
		return fmt.Errorf("waiting for the receiver to close: %w", err)
	}
	fmt.Fprintf(os.Stderr, "tcpcopy: sent %d bytes in %.6f s\n", n, time.Since(start).Seconds())
	return nil
}

// run starts the command with this process's stdin, stdout and stderr,
// forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to it, and after it ends
// writes one line to the -o file:
//
//	maxrss_kb=N wall_s=S user_s=S sys_s=S exit=N
//
// maxrss_kb is the child's ru_maxrss (KiB on Linux); user_s and sys_s its
// CPU time. It returns the child's
// exit status (128+signal when a signal ended it).
func run(args []string) (int, error) {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	out := fs.String("o", "", "write the report to `FILE`")
	fs.Parse(args)
	if *out == "" || fs.NArg() == 0 {
		usage()
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	werr := cmd.Wait()
	elapsed := time.Since(start)
	signal.Stop(sigs)
	var exit *exec.ExitError
	if werr != nil && !errors.As(werr, &exit) {
		return 0, werr
	}
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	var maxrss int64 = -1
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxrss = int64(ru.Maxrss)
	}
	line := fmt.Sprintf("maxrss_kb=%d wall_s=%.6f user_s=%.3f sys_s=%.3f exit=%d\n", maxrss, elapsed.Seconds(),
		cmd.ProcessState.UserTime().Seconds(), cmd.ProcessState.SystemTime().Seconds(), code)
	if err := os.WriteFile(*out, []byte(line), 0o644); err != nil {
		return 0, err
	}
	return code, nil
}

func dur(args []string) error {
	for _, a := range args {
		d, err := time.ParseDuration(a)
		if err != nil {
			return err
		}
		fmt.Println(strconv.FormatFloat(d.Seconds(), 'f', 6, 64))
	}
	return nil
}

// tree makes the tree of many small files of the benchmark: the same tree
// for the same FILES on every run (a fixed seed), text that compresses
// about as source code does.
func tree(args []string) error {
	if len(args) != 2 {
		usage()
	}
	dir := args[0]
	files, err := strconv.Atoi(args[1])
	if err != nil || files < 1 {
		return fmt.Errorf("FILES must be a positive number, not %q", args[1])
	}
	const perFolder = 100
	const letters = "abcdefghijklmnopqrstuvwxyz_ (){};=+-*/.,0123456789\n\t"
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	for i := 0; i < files; i++ {
		folder := filepath.Join(dir, fmt.Sprintf("d%04d", i/perFolder))
		if i%perFolder == 0 {
			if err := os.MkdirAll(folder, 0o755); err != nil {
				return err
			}
		}
		data := buf[:1024+rng.IntN(3073)]
		for j := range data {
			data[j] = letters[rng.IntN(len(letters))]
		}
		name := filepath.Join(folder, fmt.Sprintf("f%03d.txt", i%perFolder))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// gen writes BYTES bytes of ChaCha8 output to stdout: incompressible data
// at several GB/s, so that a long stream is limited by what reads it.
func gen(args []string) error {
	if len(args) != 1 {
		usage()
	}
	n, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("BYTES must be a number, not %q", args[0])
	}
	src := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, bufSize)
	for n > 0 {
		chunk := buf[:min(int64(len(buf)), n)]
		src.Read(chunk)
		if _, err := os.Stdout.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
	}
	return nil
}
