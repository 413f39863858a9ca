package files

import (
	"encoding/hex"
	"encoding/json"

	"github.com/pcp-dev/pcp/lib/archive"
)

// holdings is the message of the HAVE frames (pcp-protocol(7)): the files
// of an unfinished transfer of the same names that the receiver holds.
type holdings struct {
	Files []holding `json:"files"`
}

// holding is one held file: its path in the archive, its size, and the
// SHA-256 of its content, in hex.
type holding struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// marshalHoldings encodes held files for the sender.
func marshalHoldings(held []archive.Held) []byte {
	m := holdings{Files: make([]holding, len(held))}
	for i, h := range held {
		m.Files[i] = holding{Path: h.Path, Size: h.Size, SHA256: hex.EncodeToString(h.SHA256)}
	}
	b, _ := json.Marshal(m) // strings and numbers only
	return b
}

// parseHoldings decodes what a receiver says it holds, by path. The message
// comes from the peer: what does not parse is left out (and sent again),
// and the archive writer only looks up its own paths in it.
func parseHoldings(b []byte) map[string]archive.Held {
	var m holdings
	if len(b) == 0 || json.Unmarshal(b, &m) != nil {
		return nil
	}
	held := make(map[string]archive.Held, len(m.Files))
	for _, f := range m.Files {
		sum, err := hex.DecodeString(f.SHA256)
		if err != nil || f.Size <= 0 {
			continue
		}
		held[f.Path] = archive.Held{Path: f.Path, Size: f.Size, SHA256: sum}
	}
	return held
}
