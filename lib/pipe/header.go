package pipe

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// KindRaw is the header kind of a plain byte stream (pcp-pipe).
const KindRaw = "raw"

// Header describes a transfer before any data: the receiver accepts or
// rejects it.
type Header struct {
	// Kind says what the bytes are: KindRaw, or "tar+zstd" for pcp.
	Kind string `json:"kind"`
	// Names are the top-level names offered, if any.
	Names []string `json:"names,omitempty"`
	// Size is the total size of the offered content, -1 when unknown.
	Size int64 `json:"size"`
	// Count is the number of files offered, 0 when unknown.
	Count int64 `json:"count,omitempty"`
	// Progress tells that the sender takes RECEIVED frames: the receiver's
	// count of what it has written out, at intervals. Send sets it.
	Progress bool `json:"progress,omitempty"`
	// Holdings tells that the sender takes HAVE frames before the ACCEPT:
	// what the receiver already holds of the offer. Send sets it when
	// Options.Had is set.
	Holdings bool `json:"holdings,omitempty"`
	// Lane tells that the sender takes a lane offer (a LANE frame) before
	// the ACCEPT. Send sets it when Options.DialLane is set.
	Lane bool `json:"lane,omitempty"`
	// Skipped counts what the sender left out of the folders it offers,
	// by reason (pcp send: "outside", "special", "broken", "excluded").
	// A receiver describes the reasons it knows in its own words.
	Skipped map[string]int64 `json:"skipped,omitempty"`
}

const (
	maxKind  = 64
	maxNames = 1000
	maxName  = 4096
	maxSkips = 16
)

func (h Header) marshal() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	return json.Marshal(h)
}

func parseHeader(b []byte) (Header, error) {
	var h Header
	if err := json.Unmarshal(b, &h); err != nil {
		return Header{}, protocolErrorf("malformed header: %v", err)
	}
	if err := h.validate(); err != nil {
		return Header{}, &ProtocolError{Reason: err.Error()}
	}
	return h, nil
}

func (h Header) validate() error {
	if h.Kind == "" || len(h.Kind) > maxKind || !utf8.ValidString(h.Kind) {
		return fmt.Errorf("header: invalid kind %q", h.Kind)
	}
	if h.Size < -1 || h.Count < 0 {
		return fmt.Errorf("header: invalid size %d or count %d", h.Size, h.Count)
	}
	if len(h.Names) > maxNames {
		return fmt.Errorf("header: %d names (limit %d)", len(h.Names), maxNames)
	}
	for _, n := range h.Names {
		if len(n) > maxName || !utf8.ValidString(n) {
			return fmt.Errorf("header: invalid name")
		}
	}
	if len(h.Skipped) > maxSkips {
		return fmt.Errorf("header: %d reasons for skipped entries (limit %d)", len(h.Skipped), maxSkips)
	}
	for reason, n := range h.Skipped {
		if len(reason) > maxKind || n < 0 {
			return fmt.Errorf("header: invalid count of skipped entries")
		}
	}
	return nil
}
