package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/provisiond/provisiond/internal/atomicfile"
)

// apiTokenName is the generated token's file in the data dir.
const apiTokenName = "api-token"

// apiToken reads the API bearer token from --api-token-file or, without one,
// from <data-dir>/api-token, generating that file (mode 0600) on first start.
// The token itself is never logged; its path is.
func apiToken(cfg serveConfig, log *slog.Logger) (string, error) {
	if cfg.APITokenFile != "" {
		tok, err := readToken(cfg.APITokenFile)
		if err == nil && len(tok) < 16 {
			err = fmt.Errorf("token file %s: token shorter than 16 characters; use a random one", cfg.APITokenFile)
		}
		return tok, err
	}
	path := filepath.Join(cfg.DataDir, apiTokenName)
	tok, err := readToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	tok = rand.Text() + rand.Text() // 256 bits
	// Atomic: a crash while generating must not leave an empty token file
	// that every later start refuses.
	err = atomicfile.Write(path, func(w io.Writer) error {
		_, err := io.WriteString(w, tok+"\n")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("generate API token: %w", err)
	}
	log.Info("generated an API token; clients read it with --token-file", "path", path)
	return tok, nil
}

// readToken reads a token file: one line, surrounding space ignored. Its
// errors name the file, never the token.
func readToken(path string) (string, error) { return readSecretFile(path, "token") }

// readSecretFile reads a one-line secret (what: "token", "password") from
// path; its errors name the file, never the secret.
func readSecretFile(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("read %s file %s: %w", what, path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("read %s file %s: the file is empty", what, path)
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("read %s file %s: more than one line", what, path)
	}
	return tok, nil
}
