//go:build linux

package netns_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/linkem"
	"github.com/pcp-dev/pcp/internal/netns"
)

// helperUDPEcho echoes every datagram on args[0] back to its sender.
func helperUDPEcho(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: udpecho ADDR")
	}
	c, err := net.ListenPacket("udp", args[0])
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Println("READY")
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		c.WriteTo(buf[:n], from)
	}
}

// helperUDPProbe sends args[1] numbered datagrams to the echo server at
// args[0], one every args[2], and prints how many came back and each
// answered one's round-trip time in microseconds.
func helperUDPProbe(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: udpprobe ADDR COUNT INTERVAL")
	}
	count, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	every, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	c, err := net.Dial("udp", args[0])
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	sent := make([]time.Time, count)
	rtts := make(chan string, count)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(rtts)
				return
			}
			if i, err := strconv.Atoi(string(buf[:n])); err == nil && i >= 0 && i < count {
				rtts <- strconv.FormatInt(time.Since(sent[i]).Microseconds(), 10)
			}
		}
	}()
	for i := range count {
		sent[i] = time.Now()
		if _, err := c.Write([]byte(strconv.Itoa(i))); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		time.Sleep(every)
	}
	time.Sleep(time.Second) // the last answers
	c.Close()
	var got []string
	for r := range rtts {
		got = append(got, r)
	}
	fmt.Println(strings.Join(got, " "))
	return nil
}

// helperSink accepts one TCP connection on args[0], reads it to the end and
// prints the bytes read and the seconds between the first quarter of
// args[1] bytes and the end.
func helperSink(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: sink ADDR BYTES")
	}
	total, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Println("READY")
	c, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	buf := make([]byte, 256<<10)
	var n int64
	var quarter time.Time
	for {
		m, err := c.Read(buf)
		n += int64(m)
		if quarter.IsZero() && n >= total/4 {
			quarter = time.Now()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
	}
	fmt.Printf("%d %.6f\n", n, time.Since(quarter).Seconds())
	return nil
}

// helperSource dials args[0] and writes args[1] bytes to it.
func helperSource(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: source ADDR BYTES")
	}
	total, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	buf := make([]byte, 256<<10)
	for total > 0 {
		m, err := c.Write(buf[:min(int64(len(buf)), total)])
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		total -= int64(m)
	}
	return c.Close()
}

// ethernetGoodput is the share of a frame that is TCP payload: 1448 bytes
// of 1514 (MTU 1500 with TCP timestamps, plus the Ethernet header).
const ethernetGoodput = 1448.0 / 1514.0

func TestEmulatedLinkHonoursRateAndDelay(t *testing.T) {
	a := netns.New(t, "hostA")
	b := netns.New(t, "hostB")
	const rate, delay = 20_000_000, 25 * time.Millisecond
	shape := linkem.Shape{Rate: rate, Delay: delay, Queue: 200}
	link := netns.Emulate(t, a, "emA", "10.78.0.1/24", b, "emB", "10.78.0.2/24", shape, shape, 1)

	// Delay: the round trip of small datagrams is twice the one-way delay.
	startHelper(t, b, "udpecho", "10.78.0.2:7000")
	out := strings.Fields(runHelperOutput(t, a, 20*time.Second, "udpprobe", "10.78.0.2:7000", "50", "20ms"))
	if len(out) < 45 {
		t.Fatalf("%d of 50 probes came back over a lossless link", len(out))
	}
	var rtts []float64
	for _, f := range out {
		us, err := strconv.ParseFloat(f, 64)
		if err != nil {
			t.Fatalf("probe output %q: %v", f, err)
		}
		rtts = append(rtts, us/1e6)
	}
	slices.Sort(rtts)
	rtt, want := rtts[len(rtts)/2], 2*delay.Seconds()
	t.Logf("round trip: median %.1f ms (want %.1f ms), min %.1f, max %.1f", rtt*1e3, want*1e3, rtts[0]*1e3, rtts[len(rtts)-1]*1e3)
	if rtt < 0.9*want || rtt > 1.1*want {
		t.Errorf("median round trip %.1f ms, want %.1f ms ±10%%", rtt*1e3, want*1e3)
	}

	// Rate: a TCP stream, once past slow start, moves payload at the
	// link's rate less the headers of each frame.
	const total = 8 << 20
	cmd, lines := startHelper(t, b, "sink", "10.78.0.2:7001", strconv.Itoa(total))
	runHelperOutput(t, a, 30*time.Second, "source", "10.78.0.2:7001", strconv.Itoa(total))
	fields := strings.Fields(nextLine(t, lines, 30*time.Second))
	cmd.Wait()
	if len(fields) != 2 {
		t.Fatalf("sink printed %q", fields)
	}
	n, _ := strconv.ParseInt(fields[0], 10, 64)
	secs, _ := strconv.ParseFloat(fields[1], 64)
	if n != total {
		t.Fatalf("sink read %d bytes, want %d", n, total)
	}
	got := float64(total-total/4) * 8 / secs
	wantRate := rate * ethernetGoodput
	t.Logf("TCP goodput %.2f Mbit/s (want %.2f: %d bit/s less headers)", got/1e6, wantRate/1e6, rate)
	if got < 0.9*wantRate || got > 1.1*wantRate {
		t.Errorf("TCP goodput %.2f Mbit/s, want %.2f ±10%%", got/1e6, wantRate/1e6)
	}
	ab, ba := link.Stats()
	t.Logf("a→b %+v, b→a %+v", ab, ba)
	if ab.Lost != 0 || ba.Lost != 0 {
		t.Errorf("frames lost on a link without loss: %d, %d", ab.Lost, ba.Lost)
	}
}

func TestEmulatedLinkLosesAtItsRate(t *testing.T) {
	a := netns.New(t, "hostA")
	b := netns.New(t, "hostB")
	lossy := linkem.Shape{Delay: time.Millisecond, Loss: 0.2}
	link := netns.Emulate(t, a, "emA", "10.79.0.1/24", b, "emB", "10.79.0.2/24", lossy, linkem.Shape{}, 7)
	// Neighbour discovery needs a frame each way first: retry until one
	// echo gets through, then count.
	startHelper(t, b, "udpecho", "10.79.0.2:7000")
	runHelperOutput(t, a, 20*time.Second, "udpprobe", "10.79.0.2:7000", "20", "5ms")
	before, _ := link.Stats()
	out := strings.Fields(runHelperOutput(t, a, 20*time.Second, "udpprobe", "10.79.0.2:7000", "1000", "1ms"))
	after, _ := link.Stats()
	lost := after.Lost - before.Lost
	t.Logf("%d of 1000 echoes came back; the link dropped %d frames a→b", len(out), lost)
	if got := 1 - float64(len(out))/1000; got < 0.15 || got > 0.25 {
		t.Errorf("%.1f%% of the probes were lost, want 20%% ±5", 100*got)
	}
	if lost < 150 || lost > 250 {
		t.Errorf("the link counted %d losses of about 1000 frames, want about 200", lost)
	}
}
