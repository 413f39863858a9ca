package discovery_test

import (
	"bytes"
	"crypto/sha256"
	"strconv"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/pcp-dev/pcp/lib/discovery"
)

// keyTestTime lies 23 s into a 5-minute bucket (1700000123 = 1700000100 + 23,
// and 1700000100 = 5666667 × 300).
var keyTestTime = time.Unix(1700000123, 0)

// bucketNanos computes the expected bucket start independently of
// time.Truncate: whole seconds since the Unix epoch rounded down to 300.
func bucketNanos(t time.Time) int64 {
	s := t.Unix()
	return (s - s%300) * int64(time.Second)
}

func TestKeyStringFormat(t *testing.T) {
	const want = "/pcp/1700000100000000000/42"
	if got := discovery.KeyString(42, keyTestTime); got != want {
		t.Fatalf("KeyString(42, %v) = %q, want %q", keyTestTime, got, want)
	}
	// The same bucket arithmetic, done by hand, for another channel.
	want2 := "/pcp/" + strconv.FormatInt(bucketNanos(keyTestTime), 10) + "/2047"
	if got := discovery.KeyString(2047, keyTestTime); got != want2 {
		t.Fatalf("KeyString(2047) = %q, want %q", got, want2)
	}
	if got := discovery.KeyString(0, keyTestTime); got != "/pcp/1700000100000000000/0" {
		t.Fatalf("KeyString(0) = %q", got)
	}
}

func TestKeyStringIgnoresZoneAndMonotonicClock(t *testing.T) {
	want := discovery.KeyString(42, keyTestTime)
	// A zone 5h45m east of UTC must not shift the bucket: the key is a
	// property of the instant, not of the wall clock.
	nepal := keyTestTime.In(time.FixedZone("NPT", 5*3600+45*60))
	if got := discovery.KeyString(42, nepal); got != want {
		t.Fatalf("KeyString in a +05:45 zone = %q, want %q", got, want)
	}
	// A time with a monotonic clock reading gives the same key as its wall time.
	now := time.Now()
	if got, want := discovery.KeyString(7, now), discovery.KeyString(7, now.Round(0)); got != want {
		t.Fatalf("KeyString with monotonic reading = %q, without = %q", got, want)
	}
	if got, want := discovery.KeyString(7, now), "/pcp/"+strconv.FormatInt(bucketNanos(now), 10)+"/7"; got != want {
		t.Fatalf("KeyString(now) = %q, want %q", got, want)
	}
}

func TestKeyCID(t *testing.T) {
	k := discovery.Key(42, keyTestTime)
	if !k.Defined() {
		t.Fatal("Key returned an undefined CID")
	}
	if v := k.Version(); v != 1 {
		t.Fatalf("CID version %d, want 1", v)
	}
	if c := k.Type(); c != 0x55 {
		t.Fatalf("CID codec 0x%x, want 0x55 (raw)", c)
	}
	dec, err := mh.Decode(k.Hash())
	if err != nil {
		t.Fatalf("decode multihash: %v", err)
	}
	if dec.Code != 0x12 {
		t.Fatalf("multihash code 0x%x, want 0x12 (sha2-256)", dec.Code)
	}
	if dec.Length != 32 {
		t.Fatalf("multihash length %d, want 32", dec.Length)
	}
	sum := sha256.Sum256([]byte("/pcp/1700000100000000000/42"))
	if !bytes.Equal(dec.Digest, sum[:]) {
		t.Fatalf("multihash digest %x, want sha256 of the key string %x", dec.Digest, sum)
	}
	// Build the expected CID bytes by hand: version varint 1, codec varint
	// 0x55, multihash code 0x12, length 32, digest.
	want := append([]byte{0x01, 0x55, 0x12, 0x20}, sum[:]...)
	if !bytes.Equal(k.Bytes(), want) {
		t.Fatalf("CID bytes %x, want %x", k.Bytes(), want)
	}
	// And it survives a round trip through its string form.
	parsed, err := cid.Decode(k.String())
	if err != nil {
		t.Fatalf("parse %s: %v", k, err)
	}
	if !parsed.Equals(k) {
		t.Fatalf("CID %s does not round-trip (got %s)", k, parsed)
	}
}

func TestKeyBuckets(t *testing.T) {
	start := time.Unix(1700000100, 0) // the first instant of the bucket
	end := start.Add(discovery.Bucket - time.Nanosecond)
	k := discovery.Key(42, keyTestTime)
	for _, tm := range []time.Time{start, start.Add(time.Nanosecond), keyTestTime, start.Add(299 * time.Second), end} {
		if got := discovery.Key(42, tm); !got.Equals(k) {
			t.Errorf("Key at %v = %s, want %s (same bucket as %v)", tm.UTC(), got, k, keyTestTime.UTC())
		}
	}
	if prev := discovery.Key(42, start.Add(-time.Nanosecond)); prev.Equals(k) {
		t.Errorf("the instant before the bucket has the same key %s", prev)
	}
	if next := discovery.Key(42, end.Add(time.Nanosecond)); next.Equals(k) {
		t.Errorf("the instant after the bucket has the same key %s", next)
	}
	if got, want := discovery.KeyString(42, start.Add(-time.Nanosecond)), "/pcp/1699999800000000000/42"; got != want {
		t.Errorf("previous bucket key %q, want %q", got, want)
	}
	if got, want := discovery.KeyString(42, end.Add(time.Nanosecond)), "/pcp/1700000400000000000/42"; got != want {
		t.Errorf("next bucket key %q, want %q", got, want)
	}
	// Another channel in the same bucket is another key.
	if other := discovery.Key(43, keyTestTime); other.Equals(k) {
		t.Errorf("channels 42 and 43 share the key %s", k)
	}
	if discovery.Bucket != 5*time.Minute {
		t.Errorf("Bucket = %v, want 5m", discovery.Bucket)
	}
}

func TestFindKeysOrder(t *testing.T) {
	keys := discovery.FindKeys(42, keyTestTime)
	if len(keys) != 3 {
		t.Fatalf("FindKeys returned %d keys, want 3", len(keys))
	}
	for i, s := range []string{
		"/pcp/1699999800000000000/42",
		"/pcp/1700000100000000000/42",
		"/pcp/1700000400000000000/42",
	} {
		sum := sha256.Sum256([]byte(s))
		hash, err := mh.Encode(sum[:], mh.SHA2_256)
		if err != nil {
			t.Fatal(err)
		}
		want := cid.NewCidV1(cid.Raw, hash)
		if !keys[i].Equals(want) {
			t.Errorf("FindKeys[%d] = %s, want %s (the key of %s)", i, keys[i], want, s)
		}
	}
	// The announcer's key at t is the finder's middle key, and an announcer
	// one bucket off either way is still found.
	if !keys[1].Equals(discovery.Key(42, keyTestTime)) {
		t.Errorf("FindKeys[1] is not the announcer's Key")
	}
	if !keys[0].Equals(discovery.Key(42, keyTestTime.Add(-discovery.Bucket))) ||
		!keys[2].Equals(discovery.Key(42, keyTestTime.Add(discovery.Bucket))) {
		t.Errorf("FindKeys does not cover the neighbouring buckets")
	}
}
