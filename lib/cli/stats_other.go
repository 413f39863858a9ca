//go:build !linux

package cli

// residentBytes is not known here.
func residentBytes() (int64, bool) { return 0, false }

// openFiles is not known here.
func openFiles() (int, bool) { return 0, false }
