package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/store"
)

// Which BMC a machine has: one set through the API, sealed in the store,
// wins over its Machine's bmc: in Git.

// Sealer encrypts secrets at rest; *seal.Box implements it.
type Sealer interface {
	Seal(plaintext []byte, context string) []byte
	Open(blob []byte, context string) ([]byte, error)
}

// BMC sources, as BMCInfo.Source says them.
const (
	SourceGit = "git" // the Machine's bmc: in the profiles
	SourceAPI = "api" // set with PUT /machines/{id}/bmc; wins over Git
)

// BMCInfo is what may be shown about a machine's BMC: never its credentials.
type BMCInfo struct {
	Address     string `json:"address"`
	Source      string `json:"source"`                // "git" or "api"
	Credentials string `json:"credentials,omitempty"` // Git's reference (env:VAR, file:PATH), not the secret
}

// sealedBMC is the plaintext of an API-set BMC before sealing.
type sealedBMC struct {
	Address  string `json:"address"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// secretContext binds a sealed BMC blob to its machine.
func secretContext(mac string) string { return "bmc/" + mac }

// endpoint finds t's BMC: one set through the API wins over Git's.
func (f *Fleet) endpoint(ctx context.Context, t target) (bmc.Endpoint, BMCInfo, error) {
	ep, info, err := f.findEndpoint(ctx, t)
	if err != nil && !errors.Is(err, ErrNoBMC) {
		err = fmt.Errorf("%w: %w", ErrBMCConfig, err)
	}
	return ep, info, err
}

func (f *Fleet) findEndpoint(ctx context.Context, t target) (bmc.Endpoint, BMCInfo, error) {
	if t.mac != "" && f.secrets != nil {
		blob, err := f.store.Secret(ctx, t.mac, "bmc")
		switch {
		case err == nil:
			plain, err := f.secrets.Open(blob, secretContext(t.mac))
			if err != nil {
				return bmc.Endpoint{}, BMCInfo{}, fmt.Errorf("BMC credentials of %s: %w (was --secret-key-file changed?)", t.mac, err)
			}
			var s sealedBMC
			if err := json.Unmarshal(plain, &s); err != nil {
				return bmc.Endpoint{}, BMCInfo{}, fmt.Errorf("BMC credentials of %s: %w", t.mac, err)
			}
			ep, err := bmc.ParseAddress(s.Address)
			ep.User, ep.Password = s.User, s.Password
			return ep, BMCInfo{Address: s.Address, Source: SourceAPI}, err
		case !errors.Is(err, store.ErrNotFound):
			return bmc.Endpoint{}, BMCInfo{}, err
		}
	}
	if t.git == nil || t.git.BMC == nil {
		return bmc.Endpoint{}, BMCInfo{}, ErrNoBMC
	}
	info := BMCInfo{Address: t.git.BMC.Address, Source: SourceGit, Credentials: t.git.BMC.Credentials}
	ep, err := bmc.ParseAddress(t.git.BMC.Address)
	if err != nil {
		return ep, info, err
	}
	ep.User, ep.Password, err = bmc.Credentials(t.git.BMC.Credentials)
	return ep, info, err
}

// MachineBMC describes machine id's BMC.
func (f *Fleet) MachineBMC(ctx context.Context, id string) (BMCInfo, error) {
	info, err := f.CheckBMC(ctx, id)
	if info.Address != "" {
		return info, nil // found, even if its credentials do not resolve right now
	}
	return info, err
}

// CheckBMC resolves machine id's BMC as a power operation would, without
// contacting it: its description, and why it cannot be driven now (ErrNoBMC,
// or ErrBMCConfig when, say, its credentials do not resolve), so that the
// dashboard offers no power action that can only fail.
func (f *Fleet) CheckBMC(ctx context.Context, id string) (BMCInfo, error) {
	t, err := f.ids.target(ctx, id)
	if err != nil {
		return BMCInfo{}, err
	}
	_, info, err := f.endpoint(ctx, t)
	return info, err
}

// SetBMC stores a BMC address and credentials for machine id, sealed, in the
// store. It needs the machine's MAC: from the inventory or its Machine in Git.
func (f *Fleet) SetBMC(ctx context.Context, id, address, user, password, actor string) (BMCInfo, error) {
	if f.secrets == nil {
		return BMCInfo{}, fmt.Errorf("%w: no secret key configured to seal credentials with", ErrBMCConfig)
	}
	if _, err := bmc.ParseAddress(address); err != nil {
		return BMCInfo{}, invalid(err)
	}
	if user == "" || password == "" {
		return BMCInfo{}, fmt.Errorf("%w: username and password are required", ErrInvalid)
	}
	t, err := f.ids.target(ctx, id)
	if err != nil {
		return BMCInfo{}, err
	}
	if t.mac == "" {
		return BMCInfo{}, fmt.Errorf("%w: machine %q has no known MAC yet; name it by MAC or let it boot once", ErrState, id)
	}
	plain, err := json.Marshal(sealedBMC{Address: address, User: user, Password: password})
	if err != nil {
		return BMCInfo{}, err
	}
	if err := f.store.PutSecret(ctx, t.mac, "bmc", f.secrets.Seal(plain, secretContext(t.mac))); err != nil {
		return BMCInfo{}, err
	}
	f.event(ctx, t, store.Event{Type: EventBMC, Message: "BMC set to " + address, Actor: actor})
	f.log.Info("BMC credentials set", append(t.identity().Attrs(), "bmc", address, "actor", actor)...)
	return BMCInfo{Address: address, Source: SourceAPI}, nil
}

// DeleteBMC removes the API-set BMC of machine id; Git's, if any, applies again.
func (f *Fleet) DeleteBMC(ctx context.Context, id, actor string) error {
	t, err := f.ids.target(ctx, id)
	if err != nil {
		return err
	}
	if t.mac == "" {
		return fmt.Errorf("machine %q: no BMC set through the API: %w", id, ErrNotFound)
	}
	if err := f.store.DeleteSecret(ctx, t.mac, "bmc"); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("machine %q: no BMC set through the API: %w", id, ErrNotFound)
		}
		return err
	}
	f.event(ctx, t, store.Event{Type: EventBMC, Message: "BMC set through the API removed", Actor: actor})
	return nil
}
