// Package compress writes a zstd stream as a series of independent frames,
// one per chunk of input, each compressed at a level chosen for it: a fixed
// one, or (Auto) the one that moves the data fastest through the output
// that takes the stream, the way `zstd --adapt` does. A decoder sees plain
// zstd: concatenated frames are one zstd stream, and the level of a frame
// is nowhere in its bytes.
//
// Chunks are compressed by several goroutines at once and written in order.
// The first chunks are small, so that the first bytes leave at once; later
// ones are ChunkSize bytes, large enough that a frame of its own costs
// about 2 % of the compression ratio of one long frame.
package compress

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Levels. Store writes the data as it is, in zstd frames of raw blocks;
// Fastest to Best are klauspost/compress's zstd levels (roughly zstd -1,
// -3, -7 and -11).
const (
	Store   = 0
	Fastest = 1
	Default = 2
	Better  = 3
	Best    = 4
	// Auto chooses a level for each chunk (see the package comment).
	Auto = -1
)

const (
	// ChunkSize is the size of a full chunk: one frame.
	ChunkSize = 4 << 20
	// firstChunk is the size of the first chunk; each next one is four
	// times larger, up to ChunkSize.
	firstChunk = 16 << 10
	// maxWorkers bounds the compressing goroutines: beyond four the
	// transfer's own work (encryption, the network) wants the cores.
	maxWorkers = 4
)

// Options tune a Writer. The zero value stores (level Store).
type Options struct {
	// Level is Auto, or a level from Store to Best for every chunk.
	Level int
	// Workers is the number of compressing goroutines; 0 means one per
	// core, at most four.
	Workers int
	// Debugf, if set, is told when Auto changes the level.
	Debugf func(format string, args ...any)
	// Delivered, if set, returns the receiver's latest report of how much
	// of the stream it has written out: Auto then measures the link by it
	// (see the comment in control.go).
	Delivered func() Report
}

// Report is a receiver's count of the bytes of the stream it has written
// out, with the count that had been sent when the report arrived, and the
// time it arrived. Sent less Delivered is what the link and the buffers on
// the way held then.
type Report struct {
	Delivered, Sent int64
	At              time.Time
	// SameHost says that the receiver runs on this machine: the link is
	// memory, faster than any level compresses, and the receiver needs
	// the cores that compressing would take. Auto then stores.
	SameHost bool
}

// Stats counts what a Writer wrote.
type Stats struct {
	In, Out int64 // bytes taken and bytes written
	// Levels counts the bytes taken that were written at each level.
	Levels [Best + 1]int64
}

// Writer compresses what is written to it into an io.Writer. It is not
// safe for concurrent use; Close or Abort must be called.
type Writer struct {
	w       io.Writer
	ctl     *controller
	workers int

	cur  chunk // the chunk being filled
	next int   // the data size of the next chunk

	jobs    chan *job      // to the workers
	order   chan *job      // to the emitter, in the order of the input
	free    chan []byte    // input buffers to reuse
	outFree chan []byte    // output buffers to reuse
	emitted chan struct{}  // closed when the emitter has finished
	wg      sync.WaitGroup // the workers

	mu      sync.Mutex
	err     error // the first error of the output
	aborted bool
	closed  bool
}

// chunk is the chunk being filled: plain data, or a stored frame built
// in place.
type chunk struct {
	level  int
	data   []byte // nil before the chunk starts
	size   int    // the data it holds when full
	stored stored // for level Store
}

// job is one chunk on its way: in is plain data, or a whole stored frame.
type job struct {
	level  int
	in     []byte
	out    []byte
	stored bool          // stored by the worker: samples of it did not compress
	took   time.Duration // compressing it; 0 when not timed
	ready  chan struct{} // closed when out is set
}

// NewWriter returns a Writer that writes the stream to w.
func NewWriter(w io.Writer, opt Options) (*Writer, error) {
	if opt.Level < Auto || opt.Level > Best {
		return nil, fmt.Errorf("invalid compression level %d", opt.Level)
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), maxWorkers)
	}
	inFlight := workers + 1
	zw := &Writer{
		w:       w,
		ctl:     newController(opt.Level, workers, opt.Debugf, opt.Delivered),
		workers: workers,
		next:    firstChunk,
		jobs:    make(chan *job, inFlight),
		order:   make(chan *job, inFlight),
		free:    make(chan []byte, inFlight+1),
		outFree: make(chan []byte, inFlight+1),
		emitted: make(chan struct{}),
	}
	for range workers {
		zw.wg.Go(zw.work)
	}
	go zw.emit()
	return zw, nil
}

// Write compresses p (in the background: an error of the output shows in a
// later Write or in Close).
func (zw *Writer) Write(p []byte) (int, error) {
	if err := zw.failed(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		c := &zw.cur
		if c.data == nil {
			zw.begin()
		}
		var m int
		if c.level == Store {
			m = c.stored.write(p[:min(len(p), c.size-c.stored.n)])
		} else {
			m = min(len(p), c.size-len(c.data))
			c.data = append(c.data, p[:m]...)
		}
		p, n = p[m:], n+m
		if c.filled() == c.size {
			if err := zw.submit(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// begin starts the next chunk at the level the controller chooses.
func (zw *Writer) begin() {
	c := &zw.cur
	c.level, c.size = zw.ctl.choose(), zw.next
	c.data = reuse(zw.free, storedSize(ChunkSize))
	if c.level == Store {
		c.stored.begin(c.data)
	}
	zw.next = min(4*zw.next, ChunkSize)
}

// filled is how much data the chunk holds.
func (c *chunk) filled() int {
	if c.level == Store {
		return c.stored.n
	}
	return len(c.data)
}

// Close compresses and writes what is left, and returns the first error.
func (zw *Writer) Close() error {
	if zw.closed {
		return zw.failed()
	}
	zw.closed = true
	var err error
	if zw.cur.data != nil && zw.cur.filled() > 0 {
		err = zw.submit()
	}
	zw.stop()
	return errors.Join(err, zw.failed())
}

// Abort stops the Writer without writing anything more: what the output
// already has is a stream that ends after a whole frame, which the caller
// must not present as complete.
func (zw *Writer) Abort() {
	if zw.closed {
		return
	}
	zw.closed = true
	zw.mu.Lock()
	zw.aborted = true
	zw.mu.Unlock()
	zw.stop()
}

// Stats returns what the Writer has written so far.
func (zw *Writer) Stats() Stats { return zw.ctl.stats() }

func (zw *Writer) stop() {
	close(zw.order)
	close(zw.jobs)
	zw.wg.Wait()
	<-zw.emitted
}

func (zw *Writer) failed() error {
	zw.mu.Lock()
	defer zw.mu.Unlock()
	return zw.err
}

// reuse returns an empty buffer from free, or a new one of capacity n.
func reuse(free chan []byte, n int) []byte {
	select {
	case b := <-free:
		return b[:0]
	default:
		return make([]byte, 0, n)
	}
}

// recycle puts b back into free, unless free is full.
func recycle(free chan []byte, b []byte) {
	select {
	case free <- b:
	default:
	}
}

// submit hands the current chunk to the workers and the emitter.
func (zw *Writer) submit() error {
	c := &zw.cur
	j := &job{level: c.level, in: c.data, ready: make(chan struct{})}
	if c.level == Store {
		j.in = c.stored.end()
	}
	c.data = nil
	select {
	case zw.order <- j:
	case <-zw.emitted: // the emitter gave up on an error
		return zw.failed()
	}
	zw.jobs <- j // never blocks: it holds no more jobs than order
	return nil
}

// work compresses chunks.
func (zw *Writer) work() {
	var enc encoders
	defer enc.close()
	for j := range zw.jobs {
		if j.level == Store { // built in place
			j.out = j.in
			close(j.ready)
			continue
		}
		warm := enc.warm(j.level)
		start := time.Now()
		out := reuse(zw.outFree, storedSize(ChunkSize))
		if j.stored = zw.ctl.auto && enc.incompressible(j.in); j.stored {
			var s stored
			s.begin(out)
			for p := j.in; len(p) > 0; {
				p = p[s.write(p):]
			}
			j.out = s.end()
		} else {
			j.out = enc.encode(j.level, j.in, out)
		}
		if warm && !j.stored {
			j.took = time.Since(start)
		}
		close(j.ready)
	}
}

// emit writes the compressed chunks in order, and tells the controller how
// long it waited for each and how long the output took it.
func (zw *Writer) emit() {
	defer close(zw.emitted)
	for j := range zw.order {
		start := time.Now()
		<-j.ready
		waited := time.Since(start)
		zw.mu.Lock()
		ok := zw.err == nil && !zw.aborted
		zw.mu.Unlock()
		if ok {
			start = time.Now()
			_, err := zw.w.Write(j.out)
			if err != nil {
				zw.mu.Lock()
				zw.err = err
				zw.mu.Unlock()
			} else {
				in := len(j.in)
				if j.level == Store {
					in = storedData(j.in)
				}
				zw.ctl.observe(sample{level: j.level, stored: j.stored, in: in, out: len(j.out), took: j.took, waited: waited, wrote: time.Since(start)})
			}
		}
		recycle(zw.free, j.in)
		if j.level != Store { // else out is in
			recycle(zw.outFree, j.out)
		}
	}
}

// encoders are one worker's zstd encoders, made when first needed.
type encoders struct {
	enc  [Best + 1]*zstd.Encoder
	used [Best + 1]bool
}

// warm reports whether level's encoder has been used before: the first
// frame also allocates its tables, and its time says nothing of its speed.
func (e *encoders) warm(level int) bool {
	warm := e.used[level]
	e.used[level] = true
	if e.enc[level] == nil {
		// Options that cannot fail: a level in range, one goroutine.
		e.enc[level], _ = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevel(level)),
			zstd.WithEncoderConcurrency(1),
			// The pipe's digest already covers every byte.
			zstd.WithEncoderCRC(false),
		)
	}
	return warm
}

// sampleSize and samples: a chunk is compressed only if one of samples
// pieces of sampleSize bytes, spread over it, compresses at the fastest
// level. A chunk of random data then costs a copy, instead of the time the
// encoder takes to find nothing.
const (
	sampleSize = 16 << 10
	samples    = 4
)

// incompressible reports whether none of the samples of in compresses.
func (e *encoders) incompressible(in []byte) bool {
	if len(in) < samples*sampleSize {
		return false
	}
	e.warm(Fastest)
	var dst [sampleSize + 64]byte
	for i := range samples {
		at := i * (len(in) - sampleSize) / (samples - 1)
		if out := e.enc[Fastest].EncodeAll(in[at:at+sampleSize], dst[:0]); float64(len(out)) < incompress*sampleSize {
			return false
		}
	}
	return true
}

// encode appends the frame of in at level to dst; warm must have been
// called for level first.
func (e *encoders) encode(level int, in, dst []byte) []byte {
	return e.enc[level].EncodeAll(in, dst)
}

func (e *encoders) close() {
	for _, enc := range e.enc {
		if enc != nil {
			enc.Close()
		}
	}
}
