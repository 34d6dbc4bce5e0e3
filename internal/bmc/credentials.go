package bmc

import (
	"fmt"
	"os"
	"strings"
)

// Credentials resolves a Git Machine's bmc.credentials reference: "env:VAR"
// names an environment variable and "file:PATH" a file, each holding
// "user:password". It is resolved at every use, so a rotated file takes
// effect without a restart. Errors name the reference, never its content.
func Credentials(ref string) (user, password string, err error) {
	kind, name, _ := strings.Cut(ref, ":")
	var raw string
	switch kind {
	case "env":
		v, ok := os.LookupEnv(name)
		if !ok || name == "" {
			return "", "", fmt.Errorf("BMC credentials %s: environment variable %s is not set", ref, name)
		}
		raw = v
	case "file":
		b, err := os.ReadFile(name)
		if err != nil {
			return "", "", fmt.Errorf("BMC credentials %s: %w", ref, err)
		}
		raw = string(b)
	default:
		return "", "", fmt.Errorf("%w: BMC credentials %q: want env:VAR or file:PATH", ErrInvalid, ref)
	}
	user, password, ok := strings.Cut(strings.TrimRight(raw, "\r\n"), ":")
	if !ok || user == "" || password == "" {
		return "", "", fmt.Errorf("%w: BMC credentials %s: want user:password", ErrInvalid, ref)
	}
	return user, password, nil
}
