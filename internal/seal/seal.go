// Package seal encrypts secrets at rest, such as BMC credentials set through
// the API, with AES-256-GCM under a key kept in a file beside, not inside, the
// database: a copy of the database alone gives nothing away.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/provisiond/provisiond/internal/atomicfile"
)

// ErrOpen means a sealed blob does not open under this key and context: a
// different key file, a blob moved to another record, or corruption.
var ErrOpen = errors.New("sealed secret does not open with this key")

// version prefixes every blob so that a later key rotation or cipher change
// can tell old blobs apart.
const version = 1

// Box seals and opens secrets under one key. It is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// LoadOrCreate reads the key file at path (64 hex characters), or generates
// one there, mode 0600, when none exists. created reports the generation, so
// the caller can log where the key lives; the key itself is never returned.
func LoadOrCreate(path string) (box *Box, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand never fails on Linux
		err = atomicfile.Write(path, func(w io.Writer) error {
			_, err := io.WriteString(w, hex.EncodeToString(key)+"\n")
			return err
		})
		if err != nil {
			return nil, false, fmt.Errorf("generate secret key: %w", err)
		}
		box, err = New(key)
		return box, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("read secret key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, false, fmt.Errorf("secret key file %s: want 64 hex characters (a 256-bit key)", path)
	}
	box, err = New(key)
	return box, false, err
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext bound to context (for example "bmc/<mac>"), so a
// blob copied to another record does not open there.
func (b *Box) Seal(plaintext []byte, context string) []byte {
	nonce := make([]byte, b.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := append([]byte{version}, nonce...)
	return b.aead.Seal(out, nonce, plaintext, []byte(context))
}

// Open decrypts a blob Seal made with the same key and context.
func (b *Box) Open(blob []byte, context string) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(blob) < 1+n || blob[0] != version {
		return nil, ErrOpen
	}
	out, err := b.aead.Open(nil, blob[1:1+n], blob[1+n:], []byte(context))
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
