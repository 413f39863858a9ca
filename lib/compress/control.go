package compress

import (
	"math"
	"sync"
	"time"
)

// The Auto level, chunk by chunk.
//
// The workers that compress and the link that carries the frames share the
// work: the slower decides the throughput, and a higher level gives the
// workers more time per byte and the link fewer bytes. A level's throughput
// is the lesser of what the workers compress at it (its compression
// capacity) and what the link carries at its ratio (the link's capacity in
// bytes on the wire per second, over the level's ratio of bytes out to
// bytes in). The controller estimates both and takes the level that
// promises the most.
//
// Every frame written is a sample: its level, its bytes in and out, how
// long a worker took to compress it, and how long the emitter waited for
// it. Over a window of at least 100 ms and 8 MiB the controller measures the
// throughput (input bytes per second) and whether compression held the
// output up (the emitter waited for the workers for more than a tenth of the
// window).
//
//   - The link's capacity: with Options.Delivered, the rate at which the
//     receiver reports bytes written out, while the link is saturated: the
//     bytes sent and not yet delivered when a report arrived (the backlog)
//     grew by more than a tenth of what was sent between the window's
//     first and last report, or stayed above fullBacklog. Buffers between
//     the Writer and the link (a stream window of 4 or 16 MiB, the kernel's send
//     buffer) take the first tens of MiB at once whatever the link's speed,
//     so the time the output takes a frame says nothing until they are
//     full; the receiver's count does. An output that holds compression up
//     while the backlog stays small is not the link: it is the sender's
//     own work (encryption, on cores the compression also needs), which a
//     lower level relieves. Without reports, bytes out per second of
//     writing, whenever the output held compression up.
//   - A level's ratio: the current level's, measured, scaled by typical
//     factors to the others (the data's compressibility drifts along a
//     stream, so ratios measured at other times do not compare).
//   - A level's compression capacity: the throughput of a window at that
//     level in which compression held the output up, for ten seconds; else
//     the number of workers times the speed of one (measured, or derived
//     from a measured level by typical factors), times the share of that
//     speed that the last measured capacity showed: on a machine whose cores
//     the transfer's encryption and network also need, compressing slows
//     them down, which no worker's speed shows.
//
// After each window the controller keeps its level while that promises
// within 5 % of the best, and otherwise takes the highest level that does:
// of equal throughputs, the one that puts the fewest bytes on the wire.
// While the link's capacity is unknown and compression holds the output up,
// it tries one level lower, to learn it. With Options.Delivered a first
// window of 50 ms only starts the count, as the receiver's first reports lag
// behind, and a window closes only once it spans two reports (or after
// noReports without any: a receiver that does not report).
//
// A receiver on this machine (Report.SameHost) gets every chunk stored from
// the moment that is known: the two share the cores, and a copy through
// memory costs less than compressing at any level.
//
// Data that does not compress (four samples of a chunk, or the whole chunk,
// shrink by less than 3 %) is stored: the next 2, 4, 8 ... up to 32 chunks
// are stored without trying, then one is tried again at the current level.

const (
	windowSamples = 2                      // frames per decision, at least
	windowBytes   = 8 << 20                // input per decision, at least
	minElapsed    = 100 * time.Millisecond // and time: shorter ones are noise
	primeElapsed  = 50 * time.Millisecond  // the receiver's count's first window
	minSample     = 256 << 10              // smaller frames time too coarsely
	starvedShare  = 0.10                   // of a window spent waiting for the workers
	backlogShare  = 0.10                   // of a window's output that the backlog grew by
	minGrowth     = 256 << 10              // and at least this much (a report is that coarse)
	fullBacklog   = 4 << 20                // a backlog this large is a link behind
	minReportSpan = 40 * time.Millisecond  // between the reports of a window
	noReports     = 2 * time.Second        // a window this long without any: none come
	gain          = 1.05                   // a move must promise this much more
	incompress    = 0.97                   // a frame this large, or larger, did not compress
	maxStoreRun   = 32                     // chunks stored before trying again
	capacityFor   = 10 * time.Second       // how long a measured capacity counts
	smoothing     = 0.5                    // weight of a new window in the averages
)

// Typical speed of one worker and ratio at each level relative to Fastest,
// for levels not measured yet (klauspost/compress on Go source code, one
// core, 4 MiB frames: 313, 248, 190 and about 40 MB/s; ratios 4.9, 5.4,
// 5.8 and 6.2). Storing is a copy.
var (
	speedFactor = [Best + 1]float64{20, 1, 0.8, 0.6, 0.13}
	ratioFactor = [Best + 1]float64{0, 1, 0.91, 0.85, 0.79}
)

// sample is what one written frame tells.
type sample struct {
	level   int
	stored  bool // by the worker, because samples of it did not compress
	in, out int
	took    time.Duration // compressing it; 0 when not timed
	waited  time.Duration // the emitter, for it
	wrote   time.Duration // writing it
}

// measured is a compression capacity and when it was measured.
type measured struct {
	rate float64
	at   time.Time
}

type controller struct {
	mu        sync.Mutex
	auto      bool
	sameHost  bool // the receiver runs on this machine: store
	level     int
	workers   float64
	debugf    func(string, ...any)
	delivered func() Report

	storeLeft int // chunks still to store without trying
	storeRun  int // how many to store after the next incompressible one

	speed    [Best + 1]float64  // input bytes per second of one worker; 0 unknown
	ratio    [Best + 1]float64  // output / input; 0 unknown
	capacity [Best + 1]measured // compression capacity, when compression held the output up
	share    float64            // of the workers' speed that the last capacity showed
	wire     float64            // the link's capacity, output bytes per second; 0 unknown

	prev     Report // the receiver's report at the start of the window
	counting bool   // the receiver's reports have been primed
	win      window
	total    Stats
}

// window gathers the samples of one decision.
type window struct {
	n             int
	in, out       int64
	took          [Best + 1]time.Duration // compressing, by level
	tookIn        [Best + 1]int64         // the input those took
	skipped       int64                   // stored because it did not compress
	waited, wrote time.Duration
	start         time.Time
}

func newController(level, workers int, debugf func(string, ...any), delivered func() Report) *controller {
	c := &controller{auto: level == Auto, level: level, workers: float64(workers), debugf: debugf, delivered: delivered, share: 1}
	if c.auto {
		c.level = Fastest
	}
	c.ratio[Store] = 1
	return c
}

// choose returns the level of the next chunk.
func (c *controller) choose() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.auto && !c.sameHost && c.delivered != nil && c.delivered().SameHost {
		c.sameHost = true
		if c.debugf != nil {
			c.debugf("compression level %d -> %d: the receiver runs on this machine", c.level, Store)
		}
		c.level = Store
	}
	if c.auto && c.storeLeft > 0 {
		c.storeLeft--
		return Store
	}
	return c.level
}

func (c *controller) stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// observe takes the sample of a frame that was written.
func (c *controller) observe(s sample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total.In += int64(s.in)
	c.total.Out += int64(s.out)
	if s.stored {
		c.total.Levels[Store] += int64(s.in)
	} else {
		c.total.Levels[s.level] += int64(s.in)
	}
	if !c.auto || c.sameHost || s.in == 0 {
		return
	}
	r := float64(s.out) / float64(s.in)
	if s.level != Store {
		if !s.stored {
			c.ratio[s.level] = average(c.ratio[s.level], r)
		}
		if s.stored || r >= incompress {
			c.storeRun = min(max(2*c.storeRun, 2), maxStoreRun)
			c.storeLeft = c.storeRun
		} else {
			c.storeRun = 0
		}
	}
	w := &c.win
	mine := s.level == c.level || s.level == Store // stored while at c.level, if not Store
	if w.start.IsZero() || !mine {
		// The first frame since the output began to take them, or since the
		// level changed (frames begun before belong to the old level): the
		// window starts now.
		if mine {
			w.start = time.Now()
			c.mark()
		}
		return
	}
	w.n++
	w.in += int64(s.in)
	w.out += int64(s.out)
	if (s.level == Store || s.stored) && c.level != Store {
		w.skipped += int64(s.in)
	}
	if s.in >= minSample && s.took > 0 {
		w.took[s.level] += s.took
		w.tookIn[s.level] += int64(s.in)
	}
	w.waited += s.waited
	w.wrote += s.wrote
	elapsed := time.Since(w.start)
	priming := c.delivered != nil && !c.counting // a window that only starts the count
	if !priming && (w.n < windowSamples || w.in < windowBytes || elapsed < minElapsed) || elapsed < primeElapsed {
		return
	}
	level := c.level
	if !c.closeWindow(elapsed) {
		return // the window goes on
	}
	if c.level == level {
		*w = window{start: time.Now()}
		c.mark()
	}
}

// mark notes the receiver's report at the start of a window.
func (c *controller) mark() {
	if c.delivered != nil {
		c.prev = c.delivered()
	}
}

// closeWindow learns from the window that just closed and decides; false
// means that the window goes on (no two reports of the receiver yet).
func (c *controller) closeWindow(elapsed time.Duration) bool {
	w := &c.win
	secs := elapsed.Seconds()
	rate := float64(w.in) / secs
	bound := w.waited.Seconds() > starvedShare*secs // compression held the output up
	saturated := !bound
	var wire float64
	cur := Report{}
	if c.delivered != nil {
		cur = c.delivered()
	}
	switch {
	case c.delivered != nil && !c.counting: // the receiver's first reports lag behind
		c.counting = true
		return true
	case c.delivered != nil && cur.At.IsZero() && elapsed > noReports:
		// A receiver that does not report: judge by the output alone.
		wire = rateOf(w.out, w.wrote)
	case c.delivered != nil && (c.prev.At.IsZero() || cur.At.Sub(c.prev.At) < minReportSpan):
		// No two reports to compare yet: nothing is known of the link, and
		// a decision now would be a guess (one that stored data at the
		// start of a slow link cost seconds). The window goes on.
		if c.prev.At.IsZero() {
			c.prev = cur
		}
		return false
	case c.delivered != nil: // two reports, at least minReportSpan apart
		wire = float64(cur.Delivered-c.prev.Delivered) / cur.At.Sub(c.prev.At).Seconds()
		backlog := cur.Sent - cur.Delivered
		grew := backlog - (c.prev.Sent - c.prev.Delivered)
		slack := backlogShare * float64(cur.Sent-c.prev.Sent)
		saturated = grew > minGrowth && float64(grew) > slack || backlog >= fullBacklog && float64(grew) > -slack
		if saturated {
			bound = false // the link fell behind, whatever the buffers took
		}
	default:
		wire = rateOf(w.out, w.wrote)
	}
	for l := range c.speed {
		if w.took[l] > 0 {
			c.speed[l] = average(c.speed[l], float64(w.tookIn[l])/w.took[l].Seconds())
		}
	}
	switch {
	case saturated:
		c.wire = average(c.wire, wire)
	case c.wire > 0 && wire > c.wire:
		c.wire = wire
	}
	if w.skipped > w.in/2 {
		return true // stored because it did not compress: the level hardly mattered
	}
	if bound {
		c.capacity[c.level] = measured{rate: rate, at: time.Now()}
		if model := c.workers * c.estimate(c.level, &c.speed, &speedFactor); model > 0 {
			c.share = min(rate/model, 1)
		}
	}
	c.decide(rate, bound)
	return true
}

// decide sets the level for the next chunks, after a window that gave rate
// (input bytes per second) and in which compression held the output up or
// not (bound).
func (c *controller) decide(rate float64, bound bool) {
	var p [Best + 1]float64
	best := 0.0
	for l := range p {
		p[l] = c.promise(l)
		if l == c.level && !bound {
			p[l] = max(p[l], min(rate, c.linkLimit(l)))
		}
		best = max(best, p[l])
	}
	next := c.level
	switch {
	case bound && c.wire == 0 && c.level > Store:
		next = c.level - 1 // learn what the link can take
	case p[c.level]*gain < best:
		for l := Best; l >= Store; l-- {
			if p[l]*gain >= best {
				next = l
				break
			}
		}
	}
	if next != c.level && c.debugf != nil {
		c.debugf("compression level %d -> %d: %.0f MB/s, compression the limit: %v; promised by level %.0f MB/s (link %.0f MB/s)",
			c.level, next, rate/1e6, bound, scale(p[:], 1e-6), c.wire/1e6)
	}
	if next != c.level {
		c.win = window{} // starts with the first frame at the new level
	}
	c.level = next
}

// promise is the throughput of level l: the lesser of its compression
// capacity and what the link carries at its ratio.
func (c *controller) promise(l int) float64 {
	capacity := c.workers * c.share * c.estimate(l, &c.speed, &speedFactor)
	if m := c.capacity[l]; m.rate > 0 && time.Since(m.at) < capacityFor {
		capacity = m.rate
	}
	return min(capacity, c.linkLimit(l))
}

// linkLimit is what the link carries at level l's ratio, input bytes per
// second; +Inf while its capacity is unknown.
func (c *controller) linkLimit(l int) float64 {
	if c.wire <= 0 {
		return math.Inf(1)
	}
	return c.wire / c.ratioOf(l)
}

// ratioOf estimates level l's ratio on the data that comes now: the data's
// compressibility drifts along a stream, so the ratios of levels measured
// at other times do not compare; the current level's ratio, scaled by the
// typical factors, does.
func (c *controller) ratioOf(l int) float64 {
	if l == Store {
		return 1
	}
	if k := c.level; k != Store && c.ratio[k] > 0 {
		return c.ratio[k] * ratioFactor[l] / ratioFactor[k]
	}
	return c.estimate(l, &c.ratio, &ratioFactor)
}

// estimate returns the measured value of level l, or one derived from the
// nearest measured compressing level by the typical factors. Store's ratio
// is 1.
func (c *controller) estimate(l int, measured, factor *[Best + 1]float64) float64 {
	if measured[l] > 0 {
		return measured[l]
	}
	for d := 1; d <= Best; d++ {
		for _, k := range []int{l - d, l + d} {
			if k > Store && k <= Best && measured[k] > 0 {
				return measured[k] * factor[l] / factor[k]
			}
		}
	}
	if factor == &speedFactor {
		return 300e6 * factor[l] // nothing measured yet
	}
	return 1
}

// rateOf is n bytes per d, or +Inf when d is too short to tell.
func rateOf(n int64, d time.Duration) float64 {
	if d < time.Microsecond {
		return math.Inf(1)
	}
	return float64(n) / d.Seconds()
}

func average(old, v float64) float64 {
	switch {
	case old == 0 || math.IsInf(old, 1):
		return v
	case math.IsInf(v, 1):
		return old
	}
	return old + smoothing*(v-old)
}

func scale(v []float64, f float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Round(x * f)
	}
	return out
}
