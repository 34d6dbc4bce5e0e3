package profiles

import (
	"bufio"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/provisiond/provisiond/internal/atomicfile"
)

// cacheFileEntry is one persisted translation.
type cacheFileEntry struct {
	Key [32]byte
	Out Rendered
}

// translatorSalt is mixed into every cache key: a persisted translation made by
// another Butane or Ignition version must not be served after an upgrade.
var translatorSalt = func() []byte {
	deps := []string{translateOptions}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if strings.HasPrefix(d.Path, "github.com/coreos/") {
				deps = append(deps, d.Path+"@"+d.Version)
			}
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(deps, ",")))
	return sum[:8]
}()

// SaveFile writes the translations the live Set uses to path (mode 0600: configs
// may hold secrets), atomically, if they changed since the last save. Startup
// then reads them instead of translating every machine again.
func (c *Cache) SaveFile(path string) error {
	c.mu.Lock()
	if !c.dirty {
		c.mu.Unlock()
		return nil
	}
	entries := make([]cacheFileEntry, 0, len(c.pinned))
	for k := range c.pinned {
		if r, ok := c.entries[k]; ok {
			entries = append(entries, cacheFileEntry{Key: k, Out: *r})
		}
	}
	c.dirty = false
	c.mu.Unlock()

	err := atomicfile.Write(path, func(w io.Writer) error { return gob.NewEncoder(w).Encode(entries) })
	if err != nil {
		c.mu.Lock()
		c.dirty = true // the next reload tries again
		c.mu.Unlock()
		return fmt.Errorf("save translation cache: %w", err)
	}
	return nil
}

// LoadFile adds the translations saved at path. A missing file is no error; an
// unreadable one is reported and ignored (everything is translated again).
func (c *Cache) LoadFile(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load translation cache: %w", err)
	}
	defer f.Close()
	var entries []cacheFileEntry
	if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&entries); err != nil {
		return fmt.Errorf("load translation cache %s: %w", path, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range entries {
		c.entries[entries[i].Key] = &entries[i].Out
	}
	return nil
}
