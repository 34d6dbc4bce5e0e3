package boot

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/ident"
)

// BulkRequest is one power operation over many machines.
type BulkRequest struct {
	Action   string            // on, off, soft, cycle, reset, status, reprovision, wipe
	Selector map[string]string // Machines whose match labels include these
	IDs      []string          // and these machines, by MAC, UUID or name
	Reason   string            // for reprovision and wipe
	Actor    string
}

// bulkWorkers bounds how many machines a bulk request works on at once; the
// BMC client's own limit bounds how many BMCs are talked to.
const bulkWorkers = 64

// BulkPower runs req on every machine it selects, at most bulkWorkers at a
// time, and returns one result per machine, in selection order. A machine
// whose BMC hangs costs its own timeout and holds up no other.
func (f *Fleet) BulkPower(ctx context.Context, req BulkRequest) ([]PowerResult, error) {
	op, err := f.bulkOp(req)
	if err != nil {
		return nil, err
	}
	ids, err := f.selectIDs(ctx, req)
	if err != nil {
		return nil, err
	}
	results := make([]PowerResult, len(ids))
	sem := make(chan struct{}, bulkWorkers)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = op(ctx, id)
		}()
	}
	wg.Wait()
	return results, nil
}

// bulkOp maps a bulk action to the single-machine operation it repeats.
func (f *Fleet) bulkOp(req BulkRequest) (func(context.Context, string) PowerResult, error) {
	switch req.Action {
	case "status":
		return f.PowerStatus, nil
	case "reprovision", "wipe":
		if req.Action == "wipe" && f.live.wipeProfile() == nil {
			return nil, ErrNoWipeProfile
		}
		send := f.Reprovision
		if req.Action == "wipe" {
			send = f.Wipe
		}
		return func(ctx context.Context, id string) PowerResult {
			start := time.Now()
			m, r, err := send(ctx, id, req.Actor, req.Reason, true)
			if r == nil {
				r = &PowerResult{ID: id, MAC: m.MAC, Machine: m.Name, Action: req.Action, Err: err}
			}
			r.Took = time.Since(start)
			return *r
		}, nil
	}
	if _, err := bmc.ParseAction(req.Action); err != nil {
		return nil, invalid(fmt.Errorf("%w (or status, reprovision, wipe)", err))
	}
	return func(ctx context.Context, id string) PowerResult { return f.Power(ctx, id, req.Action, req.Actor) }, nil
}

// selectIDs lists the machines a bulk request names: its IDs, then the
// Machines its selector picks (by name), without repeats.
func (f *Fleet) selectIDs(ctx context.Context, req BulkRequest) ([]string, error) {
	if len(req.Selector) == 0 && len(req.IDs) == 0 {
		return nil, fmt.Errorf("%w: name machines or give a label selector; an empty selector would select the whole fleet", ErrInvalid)
	}
	ids := append([]string(nil), req.IDs...)
	if len(req.Selector) > 0 {
		set := f.live.Profiles()
		if set == nil {
			return nil, ErrNotLoaded
		}
		for _, m := range set.Select(req.Selector) {
			ids = append(ids, m.Name)
		}
		// Machines in the inventory that no Machine claims carry no labels,
		// so Git's Machines are the whole of what a selector can pick.
	}
	// Without repeats, also where a MAC and a name, or two spellings of a
	// MAC, are the same machine: a machine cycled twice in one bulk call
	// would be a surprise. A machine is what its BMC lock is named by, its
	// canonical MAC; an id that names none here is its own canonical form,
	// and fails alone.
	seen := map[string]bool{}
	out := ids[:0]
	for _, id := range ids {
		key := id
		if t, err := f.ids.target(ctx, id); err == nil {
			key = t.lockKey()
		} else if mac, err := ident.MAC(id); err == nil {
			key = mac
		} else if uuid, err := ident.UUID(id); err == nil {
			key = uuid
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("machines matching %v: %w", req.Selector, ErrNotFound)
	}
	return out, nil
}
