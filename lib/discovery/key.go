package discovery

import (
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Bucket is the length of the time buckets in DHT keys. An announcer
// re-announces at each boundary; a finder looks up the previous, current and
// next bucket to tolerate clock skew.
const Bucket = 5 * time.Minute

// KeyString is the DHT key of channel at time t, as the original pcp forms
// it: /pcp/{unix nanoseconds truncated to the bucket}/{channel}.
func KeyString(channel int, t time.Time) string {
	return fmt.Sprintf("/pcp/%d/%d", t.Truncate(Bucket).UnixNano(), channel)
}

// Key is the CID under which the announcer of channel at time t writes its
// provider record: CIDv1, raw codec, SHA2-256 of KeyString.
func Key(channel int, t time.Time) cid.Cid {
	sum, err := mh.Sum([]byte(KeyString(channel, t)), mh.SHA2_256, -1)
	if err != nil {
		panic(fmt.Sprintf("sha2-256 multihash: %v", err)) // cannot happen: a fixed, registered hash
	}
	return cid.NewCidV1(cid.Raw, sum)
}

// FindKeys are the keys a finder looks up at time t: the previous, current
// and next bucket.
func FindKeys(channel int, t time.Time) []cid.Cid {
	return []cid.Cid{Key(channel, t.Add(-Bucket)), Key(channel, t), Key(channel, t.Add(Bucket))}
}
