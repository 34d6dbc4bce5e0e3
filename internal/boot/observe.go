package boot

import "time"

// Observer is told what the core did, for metrics; *metrics.Metrics
// implements it. It is called on the request path, so it must be cheap and
// never block, and it is given nothing that names a machine.
type Observer interface {
	// Reloaded reports a profile load that finished at at; err is nil when
	// the new set went live.
	Reloaded(at time.Time, err error)
	// BMCOperation reports one conversation with a BMC: action as
	// PowerResult.Action names it, its wall time, and the BMC's error.
	BMCOperation(action string, took time.Duration, err error)
	// Refused reports a script, config or phone-home request refused by a
	// secrecy check.
	Refused(e *RefusedError)
	// Pruned reports only-discovered machines deleted over the cap.
	Pruned(n int)
	// Synced reports a sync with the profiles' Git repository: result is
	// one of the Sync constants.
	Synced(result string)
	// LiveCommit reports the abbreviated hash of the commit whose profiles
	// went live.
	LiveCommit(short string)
	// Stalled reports how many machines are stalled now (stalled.go).
	Stalled(n int)
}

// noObserver is the Observer of a part configured without one.
type noObserver struct{}

func (noObserver) Reloaded(time.Time, error)                 {}
func (noObserver) BMCOperation(string, time.Duration, error) {}
func (noObserver) Refused(*RefusedError)                     {}
func (noObserver) Pruned(int)                                {}
func (noObserver) Synced(string)                             {}
func (noObserver) LiveCommit(string)                         {}
func (noObserver) Stalled(int)                               {}
