package compress

import (
	"math"
	"sync"
	"time"
)

// The Auto level, chunk by chunk.
//
// The workers that compress and the output that takes the frames share the
// work: the slower decides the throughput, and a higher level gives the
// workers more time per byte and the output fewer bytes. On a machine whose
// cores the transfer's encryption and network also need, compressing also
// slows the output down, so the throughput of a level is known for sure
// only once the level has been used. Every frame written is a sample: its
// level, its bytes in and out, how long a worker took to compress it, how
// long the emitter waited for it, and how long the output took it.
//
// Over a window of at least 150 ms and 8 MiB the controller measures the
// throughput of the level in use (input bytes per second) and whether
// compression held the output up (the emitter waited for the workers for
// more than a tenth of the window). For levels not used lately it keeps a
// model: the speed of one worker and the ratio (out/in) at each level,
// measured or derived from a measured level by typical factors, and the
// output's capacity (bytes out per second of writing); a level promises the
// lesser of what the workers compress at it and what the output carries at
// its ratio.
//
// After each window: when compression held the output up and the level
// below has not been used in the last ten seconds, it tries that level;
// when the output held compression up and the level above, not used
// lately, promises 5 % more, it tries that. Otherwise it takes, of the
// levels used in the last ten seconds (and the models of the others), the
// highest level within 5 % of the best throughput: of equal throughputs, the
// one that puts the fewest bytes on the wire. The first window starts with
// the first frame the output took, so that the wait for the receiver does
// not count.
//
// Data that does not compress (four samples of a chunk, or the whole
// chunk, shrink by less than 3 %) is stored: the next 2, 4, 8 ... up to 32
// chunks are stored without trying, then one is tried again at the current
// level.

const (
	windowSamples = 2                      // frames per decision, at least
	windowBytes   = 8 << 20                // input per decision, at least
	minElapsed    = 150 * time.Millisecond // and time: shorter ones are noise
	minSample     = 256 << 10              // smaller frames time too coarsely
	starvedShare  = 0.10                   // of a window spent waiting for the workers
	gain          = 1.05                   // a move must promise this much more
	incompress    = 0.97                   // a frame this large, or larger, did not compress
	maxStoreRun   = 32                     // chunks stored before trying again
	seenFor       = 10 * time.Second       // how long a level's throughput counts
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

type controller struct {
	mu      sync.Mutex
	auto    bool
	level   int
	workers float64
	debugf  func(string, ...any)

	storeLeft int // chunks still to store without trying
	storeRun  int // how many to store after the next incompressible one

	speed [Best + 1]float64 // input bytes per second of one worker; 0 unknown
	ratio [Best + 1]float64 // output / input; 0 unknown
	wire  float64           // output bytes per second of writing; 0 unknown
	seen  [Best + 1]seen    // what each level gave when last used

	win   window
	total Stats
}

// seen is the throughput a level gave, and when.
type seen struct {
	rate float64
	at   time.Time
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

func newController(level, workers int, debugf func(string, ...any)) *controller {
	c := &controller{auto: level == Auto, level: level, workers: float64(workers), debugf: debugf}
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
	if !c.auto || s.in == 0 {
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
	if w.start.IsZero() { // the first frame: the output just began to take them
		w.start = time.Now()
		return
	}
	w.n++
	w.in += int64(s.in)
	w.out += int64(s.out)
	if (s.level == Store || s.stored) && c.level != Store {
		w.skipped += int64(s.in) // stored because it did not compress
	}
	if s.in >= minSample && s.took > 0 {
		w.took[s.level] += s.took
		w.tookIn[s.level] += int64(s.in)
	}
	w.waited += s.waited
	w.wrote += s.wrote
	elapsed := time.Since(w.start)
	if w.n < windowSamples || w.in < windowBytes || elapsed < minElapsed {
		return
	}
	c.learn()
	if w.skipped <= w.in/2 { // else the level hardly mattered
		c.decide(float64(w.in)/elapsed.Seconds(), w.waited.Seconds() > starvedShare*elapsed.Seconds())
	}
	*w = window{start: time.Now()}
}

// learn updates the estimates from the window that just closed.
func (c *controller) learn() {
	w := &c.win
	for l := range c.speed {
		if w.took[l] > 0 {
			c.speed[l] = average(c.speed[l], float64(w.tookIn[l])/w.took[l].Seconds())
		}
	}
	c.wire = average(c.wire, rateOf(w.out, w.wrote))
}

// decide sets the level for the next chunks, after a window that gave rate
// (input bytes per second) and in which compression held the output up or
// not (starved).
func (c *controller) decide(rate float64, starved bool) {
	now := time.Now()
	c.seen[c.level] = seen{rate: rate, at: now}
	fresh := func(l int) bool { return c.seen[l].rate > 0 && now.Sub(c.seen[l].at) < seenFor }
	var p [Best + 1]float64
	best := 0.0
	for l := range p {
		p[l] = c.model(l)
		if fresh(l) {
			p[l] = c.seen[l].rate
		}
		best = max(best, p[l])
	}
	next := c.level
	switch down, up := c.level-1, c.level+1; {
	case starved && down >= Store && !fresh(down):
		next = down
	case !starved && up <= Best && !fresh(up) && p[up] > gain*rate:
		next = up
	case p[c.level]*gain < best:
		for l := Best; l >= Store; l-- {
			if p[l]*gain >= best {
				next = l
				break
			}
		}
	}
	if next != c.level && c.debugf != nil {
		c.debugf("compression level %d -> %d: %.0f MB/s, waited for compression: %v; by level %.0f MB/s (output %.0f MB/s)",
			c.level, next, rate/1e6, starved, scale(p[:], 1e-6), c.wire/1e6)
	}
	c.level = next
}

// model is the throughput that level l promises: the lesser of what the
// workers compress at it and what the output carries at its ratio.
func (c *controller) model(l int) float64 {
	p := c.workers * c.estimate(l, &c.speed, &speedFactor)
	if c.wire > 0 {
		p = min(p, c.wire/c.estimate(l, &c.ratio, &ratioFactor))
	}
	return p
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
