// Package linkem emulates a network link in user space: frames read from one
// TAP device reach the other after the link's queue, serialisation at its
// rate, its one-way delay and its random loss, separately for each
// direction, like Linux's netem (which this machine's kernel lacks).
//
// The model, per direction: a frame that arrives while the queue holds Queue
// frames is dropped (tail drop); one that survives the random loss waits for
// the frames ahead of it, takes size×8/Rate to be sent, and is delivered
// Delay later. Frames are never reordered. The emulator reads as fast as the
// kernel hands frames over, so the queue of the emulated link is the only
// queue a sender fills, as at a real bottleneck router.
package linkem

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueue is the queue limit in frames when Shape.Queue is 0: netem's
// default limit.
const DefaultQueue = 1000

// Shape is what one direction of the link does to frames.
type Shape struct {
	// Rate is the link's rate in bits per second; 0 means unlimited.
	Rate int64
	// Delay is the one-way propagation delay.
	Delay time.Duration
	// Loss is the probability, 0 to 1, that a frame is dropped.
	Loss float64
	// Queue is how many frames may wait for the wire; 0 means DefaultQueue.
	Queue int
}

// Stats counts what happened to the frames of one direction.
type Stats struct {
	Delivered  int64 // frames written to the far device
	Bytes      int64 // their bytes
	Lost       int64 // dropped at random (Shape.Loss)
	Overflowed int64 // dropped because the queue was full
}

// Link forwards frames between two devices until it is closed.
type Link struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ab, ba *direction
	a, b   io.Closer
}

// Start forwards frames between a and b (open TAP devices, see OpenTAP):
// a's frames reach b shaped by ab, b's reach a shaped by ba. seed makes the
// random losses repeatable.
func Start(a, b io.ReadWriteCloser, ab, ba Shape, seed uint64) *Link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{
		cancel: cancel,
		ab:     newDirection(ab, rand.New(rand.NewPCG(seed, 1))),
		ba:     newDirection(ba, rand.New(rand.NewPCG(seed, 2))),
		a:      a,
		b:      b,
	}
	for _, d := range []struct {
		dir      *direction
		src, dst io.ReadWriter
	}{{l.ab, a, b}, {l.ba, b, a}} {
		l.wg.Add(2)
		go func() { defer l.wg.Done(); d.dir.read(ctx, d.src) }()
		go func() { defer l.wg.Done(); d.dir.deliver(ctx, d.dst) }()
	}
	return l
}

// Stats returns the counts of each direction so far.
func (l *Link) Stats() (ab, ba Stats) { return l.ab.stats(), l.ba.stats() }

// Close stops forwarding and closes both devices (which removes them).
func (l *Link) Close() error {
	l.cancel()
	err := errors.Join(l.a.Close(), l.b.Close()) // unblocks the readers
	l.wg.Wait()
	return err
}

// maxFrame bounds a frame read from a device (a TAP's MTU is 1500 unless
// raised; 64 KiB covers any MTU).
const maxFrame = 64 << 10

// packet is a frame on its way, due at the far end at due.
type packet struct {
	buf []byte
	due time.Time
}

// direction is one way of the link.
type direction struct {
	shape Shape
	rng   *rand.Rand
	// queue carries frames from the reader to the deliverer in order; its
	// capacity bounds frames in flight, far above any profile's needs.
	queue chan packet
	pool  sync.Pool

	// Read and written by the reader only.
	busyUntil time.Time   // when the wire finishes the last frame queued
	departs   []time.Time // when each frame still queued leaves the queue

	delivered, bytes, lost, overflowed atomic.Int64
}

func newDirection(s Shape, rng *rand.Rand) *direction {
	if s.Queue <= 0 {
		s.Queue = DefaultQueue
	}
	d := &direction{shape: s, rng: rng, queue: make(chan packet, 1<<16)}
	d.pool.New = func() any { return make([]byte, maxFrame) }
	return d
}

func (d *direction) stats() Stats {
	return Stats{Delivered: d.delivered.Load(), Bytes: d.bytes.Load(), Lost: d.lost.Load(), Overflowed: d.overflowed.Load()}
}

// read takes frames from src, decides their fate and queues the survivors.
func (d *direction) read(ctx context.Context, src io.Reader) {
	defer close(d.queue)
	for {
		buf := d.pool.Get().([]byte)
		n, err := src.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return
			}
			// A device that is not up yet reads EIO until it is.
			d.pool.Put(buf)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		due, ok := d.admit(time.Now(), n)
		if !ok {
			d.pool.Put(buf)
			continue
		}
		select {
		case d.queue <- packet{buf: buf[:n], due: due}:
		default:
			d.overflowed.Add(1)
			d.pool.Put(buf)
		}
	}
}

// admit applies loss and the queue to an n-byte frame that arrived at now,
// and returns when it is due at the far end.
func (d *direction) admit(now time.Time, n int) (time.Time, bool) {
	if d.shape.Loss > 0 && d.rng.Float64() < d.shape.Loss {
		d.lost.Add(1)
		return time.Time{}, false
	}
	if d.shape.Rate <= 0 {
		return now.Add(d.shape.Delay), true
	}
	// Frames whose serialisation has begun have left the queue.
	i := 0
	for i < len(d.departs) && !d.departs[i].After(now) {
		i++
	}
	d.departs = d.departs[i:]
	if len(d.departs) >= d.shape.Queue {
		d.overflowed.Add(1)
		return time.Time{}, false
	}
	start := now
	if d.busyUntil.After(start) {
		start = d.busyUntil
	}
	d.departs = append(d.departs, start)
	d.busyUntil = start.Add(time.Duration(int64(n) * 8 * int64(time.Second) / d.shape.Rate))
	return d.busyUntil.Add(d.shape.Delay), true
}

// deliver writes queued frames to dst when they are due.
func (d *direction) deliver(ctx context.Context, dst io.Writer) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for p := range d.queue {
		if wait := time.Until(p.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		if _, err := dst.Write(p.buf); err == nil {
			d.delivered.Add(1)
			d.bytes.Add(int64(len(p.buf)))
		}
		d.pool.Put(p.buf[:cap(p.buf)])
	}
}
