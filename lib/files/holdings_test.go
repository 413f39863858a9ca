package files

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pcp-dev/pcp/lib/archive"
	"github.com/pcp-dev/pcp/lib/pipe"
)

// What the receiver holds reaches the sender as it was; what a hostile
// receiver sends that does not parse is left out, never trusted.
func TestHoldingsMessage(t *testing.T) {
	held := []archive.Held{
		{Path: "photos/a.jpg", Size: 10, SHA256: bytes.Repeat([]byte{1}, 32)},
		{Path: "photos/\u202egnp.exe", Size: 1 << 40, SHA256: bytes.Repeat([]byte{2}, 32)},
	}
	got := parseHoldings(marshalHoldings(held))
	if len(got) != 2 || !bytes.Equal(got["photos/a.jpg"].SHA256, held[0].SHA256) || got["photos/\u202egnp.exe"].Size != 1<<40 {
		t.Fatalf("parsed %v, want %v", got, held)
	}
	for _, bad := range []string{
		``, `{`, `[]`, `{"files":3}`,
		`{"files":[{"path":"a","size":-1,"sha256":"00"}]}`,
		`{"files":[{"path":"a","size":1,"sha256":"zz"}]}`,
	} {
		if got := parseHoldings([]byte(bad)); len(got) != 0 {
			t.Errorf("parseHoldings(%s) = %v, want nothing", bad, got)
		}
	}
}

// A transfer cut short keeps its files for a resume; one whose data was
// wrong or refused does not.
func TestCutShort(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{context.Canceled, true},
		{fmt.Errorf("receive: %w", &pipe.LostError{Cause: errors.New("reset"), Reconnect: errors.New("gone")}), true},
		{&pipe.PeerError{Message: "interrupted"}, true},
		{&pipe.StalledError{Step: "x"}, true},
		{&pipe.IntegrityError{Reason: "the stream ended after 5 bytes", Err: errors.New("EOF")}, true},
		{&pipe.IntegrityError{Reason: "the digest of the data does not match the sender's"}, false},
		{&archive.UnsafeEntryError{Name: "x", Reason: "y"}, false},
		{&pipe.ProtocolError{Reason: "z"}, false},
		{errors.New("no space left on device"), false},
	} {
		if got := cutShort(tc.err); got != tc.want {
			t.Errorf("cutShort(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
