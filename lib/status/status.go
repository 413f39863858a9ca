// Package status carries the status lines that the library reports to its
// caller: an injected pair of print functions instead of a global logger.
package status

import "fmt"

// Logger prints status lines. The zero value prints nothing.
type Logger struct {
	// Info prints what a user sees by default: one line per phase at most.
	Info func(format string, args ...any)
	// Debug prints details shown with -v: each phase and its duration.
	Debug func(format string, args ...any)
}

// Infof prints a default status line.
func (l Logger) Infof(format string, args ...any) {
	if l.Info != nil {
		l.Info(format, args...)
	}
}

// Debugf prints a verbose status line.
func (l Logger) Debugf(format string, args ...any) {
	if l.Debug != nil {
		l.Debug(format, args...)
	}
}

// Size formats a byte count for people: 1.5 MiB.
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
