//go:build !linux && !darwin

package archive

import (
	"os"
	"time"
)

// oNoFollow is not available here; callers check the type after opening.
const oNoFollow = 0

// lutimes is not supported here: symlinks keep the time of their creation.
func lutimes(string, time.Time) error { return nil }

// tryLock cannot lock here: every staging directory counts as free.
func tryLock(*os.File) bool { return true }
