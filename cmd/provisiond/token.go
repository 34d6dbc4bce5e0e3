package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// apiTokenName is the generated token's file in the data dir.
const apiTokenName = "api-token"

// apiToken reads the API bearer token from --api-token-file or, without one,
// from <data-dir>/api-token, generating that file (mode 0600) on first start.
// The token itself is never logged; its path is.
func apiToken(cfg serveConfig, log *slog.Logger) (string, error) {
	if cfg.APITokenFile != "" {
		return readToken(cfg.APITokenFile)
	}
	path := filepath.Join(cfg.DataDir, apiTokenName)
	tok, err := readToken(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	tok = rand.Text() + rand.Text() // 256 bits
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("generate API token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("generate API token %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("generate API token %s: %w", path, err)
	}
	log.Info("generated an API token; clients read it with --token-file", "path", path)
	return tok, nil
}

// readToken reads a token file: one line, surrounding space ignored.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	if len(tok) < 16 {
		return "", fmt.Errorf("token file %s: token shorter than 16 characters; use a random one", path)
	}
	return tok, nil
}
