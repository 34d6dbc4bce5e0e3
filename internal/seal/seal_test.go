package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret-key")
	box, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	blob := box.Seal([]byte("admin:hunter2"), "bmc/52:54:00:00:00:01")
	if bytes.Contains(blob, []byte("hunter2")) {
		t.Fatal("sealed blob contains the plaintext")
	}

	again, created, err := LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate: created=%v err=%v", created, err)
	}
	got, err := again.Open(blob, "bmc/52:54:00:00:00:01")
	if err != nil || string(got) != "admin:hunter2" {
		t.Fatalf("Open after reload = %q, %v", got, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	box, _, err := LoadOrCreate(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := LoadOrCreate(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	blob := box.Seal([]byte("admin:hunter2"), "bmc/52:54:00:00:00:01")
	flipped := bytes.Clone(blob)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		box  *Box
		blob []byte
		ctx  string
	}{
		"other record": {box, blob, "bmc/52:54:00:00:00:02"},
		"other key":    {other, blob, "bmc/52:54:00:00:00:01"},
		"tampered":     {box, flipped, "bmc/52:54:00:00:00:01"},
		"truncated":    {box, blob[:5], "bmc/52:54:00:00:00:01"},
		"empty":        {box, nil, "bmc/52:54:00:00:00:01"},
	} {
		if _, err := tc.box.Open(tc.blob, tc.ctx); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: Open err = %v, want ErrOpen", name, err)
		}
	}
}

func TestBadKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte("not-hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadOrCreate(path)
	if err == nil || !strings.Contains(err.Error(), "64 hex characters") {
		t.Fatalf("err = %v, want a clear key format error", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "not-hex\n" {
		t.Fatal("a bad key file was overwritten")
	}
}
