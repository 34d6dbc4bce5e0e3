package dhcp

import "fmt"

// Check refuses a mode that is neither proxy nor authoritative.
func (m Mode) Check() error {
	switch m {
	case ModeProxy, ModeAuthoritative:
		return nil
	}
	return fmt.Errorf("dhcp mode %q: want %s or %s", string(m), ModeProxy, ModeAuthoritative)
}
