package files

import (
	"fmt"

	"github.com/pcp-dev/pcp/lib/status"
)

// SpaceError refuses an offer larger than the free space where it would be
// extracted.
type SpaceError struct {
	Dir        string
	Need, Free int64
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("not enough space in %s: the offer holds %s, %s is free", e.Dir, status.Size(e.Need), status.Size(e.Free))
}

// PeerMessage is what the sender is told: the receiver is the one to act.
func (e *SpaceError) PeerMessage() string {
	return fmt.Sprintf("the receiver has not enough disk space (%s offered, %s free where it receives)", status.Size(e.Need), status.Size(e.Free))
}

// checkSpace refuses an offer of size bytes (at least that much: each file
// also takes part of a block) when the file system of dir has less free;
// where the system does not tell, it accepts.
func checkSpace(dir string, size int64) error {
	free, ok := freeSpace(dir)
	if ok && size > free {
		return &SpaceError{Dir: dir, Need: size, Free: free}
	}
	return nil
}
