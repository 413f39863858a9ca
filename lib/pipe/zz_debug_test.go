package pipe

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

type logConn struct {
	*net.TCPConn
	mu  sync.Mutex
	log []string
	t0  time.Time
}

func (l *logConn) add(s string, a ...any) {
	l.mu.Lock()
	l.log = append(l.log, fmt.Sprintf("%8.3fms ", float64(time.Since(l.t0).Microseconds())/1000)+fmt.Sprintf(s, a...))
	l.mu.Unlock()
}
func (l *logConn) Read(p []byte) (int, error) {
	n, err := l.TCPConn.Read(p)
	l.add("read %d %v", n, err)
	return n, err
}
func (l *logConn) Write(p []byte) (int, error) {
	n, err := l.TCPConn.Write(p)
	if len(p) < 100 || err != nil {
		l.add("write %c %d %v", p[0], n, err)
	}
	return n, err
}
func (l *logConn) SetReadDeadline(d time.Time) error {
	l.add("rdl +%v", time.Until(d))
	return l.TCPConn.SetReadDeadline(d)
}

func TestDebugRT(t *testing.T) {
	ctx := testContext(t)
	data := randomBytes(t, 20<<20)
	a, b := tcpPair(t)
	la := &logConn{TCPConn: a, t0: time.Now()}
	lb := &logConn{TCPConn: b, t0: la.t0}
	var dst bytes.Buffer
	recv := async(func() (int64, error) { return Receive(ctx, lb, &dst, Options{Timing: testTiming}) })
	_, err := Send(ctx, la, Header{Kind: "raw", Size: -1}, bytes.NewReader(data), Options{Timing: testTiming})
	r := await(t, recv, "Receive")
	if err != nil {
		for _, s := range la.log {
			if len(s) > 0 {
				t.Log("A ", s)
			}
		}
		for _, s := range lb.log {
			if !bytes.Contains([]byte(s), []byte("read 2")) {
				t.Log("B ", s)
			}
		}
		t.Fatalf("Send %v, recv %v", err, r.err)
	}
}
