package boltstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// PutSecret implements Store. The machine need not be known yet: credentials
// may be stored before it is first seen.
func (db *DB) PutSecret(ctx context.Context, mac, name string, blob []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.SecretKey(mac, name)
	if err != nil {
		return fmt.Errorf("store: put secret: %w", err)
	}
	err = db.bdb.Update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketSecrets).Put([]byte(key), blob)
	})
	if err != nil {
		return fmt.Errorf("store: secret %s: %w", key, err)
	}
	return nil
}

// Secret implements Store.
func (db *DB) Secret(ctx context.Context, mac, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := store.SecretKey(mac, name)
	if err != nil {
		return nil, fmt.Errorf("store: secret: %w", err)
	}
	var blob []byte
	err = db.bdb.View(func(tx *bolt.Tx) error {
		v := bucket(tx, bucketSecrets).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		blob = bytes.Clone(v) // v points into the mmap, which is invalid after the transaction
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: secret %s: %w", key, err)
	}
	return blob, nil
}

// DeleteSecret implements Store.
func (db *DB) DeleteSecret(ctx context.Context, mac, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := store.SecretKey(mac, name)
	if err != nil {
		return fmt.Errorf("store: delete secret: %w", err)
	}
	err = db.bdb.Update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketSecrets)
		if b.Get([]byte(key)) == nil {
			return store.ErrNotFound
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("store: delete secret %s: %w", key, err)
	}
	return nil
}
