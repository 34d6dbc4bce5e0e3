package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		fill    func(io.Writer) error
		wantErr error
		want    string
	}{
		{"failed fill keeps the old content", func(w io.Writer) error { _, _ = io.WriteString(w, "half"); return boom }, boom, "old"},
		{"replaces", func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }, nil, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Write(path, tc.fill); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tc.want {
				t.Fatalf("content %q, %v; want %q", got, err, tc.want)
			}
			if fi, _ := os.Stat(path); tc.wantErr == nil && fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("%d entries in the directory; the temporary file was left behind", len(entries))
			}
		})
	}
}
