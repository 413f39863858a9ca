// Package status carries the status lines that the library reports to its
// caller: an injected pair of print functions instead of a global logger.
package status

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
