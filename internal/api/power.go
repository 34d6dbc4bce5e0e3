package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/store"
)

// PowerResult is one machine's power operation as the API reports it.
type PowerResult struct {
	ID      string `json:"id"`
	MAC     string `json:"mac,omitempty"`
	Machine string `json:"machine,omitempty"`
	Action  string `json:"action"`
	OK      bool   `json:"ok"`
	State   string `json:"state,omitempty"` // power state read, or the one the action left
	Before  string `json:"before,omitempty"`
	Done    string `json:"done,omitempty"` // the action taken: a cycle of a machine that was off is "on"
	Boot    string `json:"boot,omitempty"` // next-boot override read back after setting PXE
	BMC     string `json:"bmc,omitempty"`  // the BMC's address, never its credentials
	Error   string `json:"error,omitempty"`
	// DoneBy and Note: this reprovision or wipe did not cycle the machine,
	// since an identical one (DoneBy's) network-booted it after this one was
	// asked; Before, Done and Boot are that one's.
	DoneBy string `json:"done_by,omitempty"`
	Note   string `json:"note,omitempty"`
	TookMS int64  `json:"took_ms"`
}

func powerJSON(r boot.PowerResult) PowerResult {
	out := PowerResult{
		ID: r.ID, MAC: r.MAC, Machine: r.Machine, Action: r.Action, OK: r.Err == nil, State: r.State,
		Before: r.Outcome.Before, Done: string(r.Outcome.Done), Boot: r.Outcome.BootReadback, BMC: r.BMC,
		TookMS: r.Took.Milliseconds(),
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	if r.DoneBy != "" {
		out.DoneBy = r.DoneBy
		out.Note = "already done: " + r.DoneBy + "'s identical " + r.Action + ", asked for at the same time, network-booted the machine; not cycled again"
	}
	return out
}

// BulkResult is the answer to POST /power.
type BulkResult struct {
	Results []PowerResult `json:"results"`
	OK      int           `json:"ok"`
	Failed  int           `json:"failed"`
	TookMS  int64         `json:"took_ms"`
}

// PowerState is the answer to GET /machines/{id}/power.
type PowerState struct {
	State string `json:"state"`
}

// actor names who asked, as "alice/api@10.0.0.5": the name is what the
// caller declares in ActorHeader (the CLI sends the local user).
func actor(r *http.Request) string {
	return boot.Actor(r.Header.Get(ActorHeader), "api", r.RemoteAddr)
}

// ActorHeader carries the caller's name for the event log.
const ActorHeader = "X-Provisiond-Actor"

// powerStatus serves GET /machines/{id}/power.
func (a *api) powerStatus(w http.ResponseWriter, r *http.Request) {
	res := a.b.PowerStatus(r.Context(), chi.URLParam(r, "id"))
	if res.Err != nil {
		a.failPower(w, r, res)
		return
	}
	writeJSON(w, http.StatusOK, PowerState{State: res.State})
}

// power serves POST /machines/{id}/power {"action": "on|off|soft|cycle|reset"}.
func (a *api) power(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Action string `json:"action"`
	}
	if err := decodeBody(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	res := a.b.Power(r.Context(), chi.URLParam(r, "id"), req.Action, actor(r))
	if res.Err != nil {
		a.failPower(w, r, res)
		return
	}
	writeJSON(w, http.StatusOK, powerJSON(res))
}

// failPower answers a failed power operation: the core's sentinels as fail
// maps them; a BMC that failed is 502 (504 on timeout) with the whole result,
// since the BMC's words are what the operator needs.
func (a *api) failPower(w http.ResponseWriter, r *http.Request, res boot.PowerResult) {
	switch {
	case errors.Is(res.Err, bmc.ErrTimeout):
		writeJSON(w, http.StatusGatewayTimeout, powerJSON(res))
	case res.BMC != "" && httperr.Status(res.Err) == http.StatusInternalServerError:
		// The machine and its BMC were found, and the core has no word for
		// the failure (such as ErrBusy or ErrBMCConfig): it is the BMC's.
		writeJSON(w, http.StatusBadGateway, powerJSON(res))
	default:
		a.fail(w, r, res.Err)
	}
}

// sendBackRequest is the body of POST /machines/{id}/reprovision and /wipe.
type sendBackRequest struct {
	Reason string `json:"reason"`
	// Power: network-boot the machine through its BMC now (default true).
	Power *bool `json:"power"`
}

// SendBackResult is the answer to reprovision and wipe: the machine, and what
// its BMC did (absent when it has none or power was false).
type SendBackResult struct {
	Machine
	BMCResult *PowerResult `json:"bmc_result,omitempty"`
}

// reprovision serves POST /machines/{id}/reprovision.
func (a *api) reprovision(w http.ResponseWriter, r *http.Request) {
	a.sendBack(w, r, a.b.Reprovision)
}

// wipe serves POST /machines/{id}/wipe.
func (a *api) wipe(w http.ResponseWriter, r *http.Request) {
	a.sendBack(w, r, a.b.Wipe)
}

func (a *api) sendBack(w http.ResponseWriter, r *http.Request, send sendBackFunc) {
	var req sendBackRequest
	if err := decodeBody(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	m, res, err := send(r.Context(), chi.URLParam(r, "id"), actor(r), req.Reason, req.Power == nil || *req.Power)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := SendBackResult{Machine: a.toJSON(m)}
	if res != nil {
		p := powerJSON(*res)
		out.BMCResult = &p
	}
	// The lifecycle change is done whatever the BMC said: 200, with the
	// BMC's failure in bmc_result.error for the caller to act on.
	writeJSON(w, http.StatusOK, out)
}

// bulkRequest is the body of POST /power.
type bulkRequest struct {
	Action   string            `json:"action"`
	Selector map[string]string `json:"selector"`
	Machines []string          `json:"machines"`
	Reason   string            `json:"reason"`
}

// bulkPower serves POST /power: one action over machines named or selected by labels.
func (a *api) bulkPower(w http.ResponseWriter, r *http.Request) {
	var req bulkRequest
	if err := decodeBody(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	start := time.Now()
	results, err := a.b.BulkPower(r.Context(), boot.BulkRequest{
		Action: req.Action, Selector: req.Selector, IDs: req.Machines, Reason: req.Reason, Actor: actor(r),
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := BulkResult{Results: make([]PowerResult, 0, len(results))}
	for _, res := range results {
		p := powerJSON(res)
		if p.OK {
			out.OK++
		} else {
			out.Failed++
		}
		out.Results = append(out.Results, p)
	}
	out.TookMS = time.Since(start).Milliseconds()
	writeJSON(w, http.StatusOK, out)
}

// bmcRequest is the body of PUT /machines/{id}/bmc.
type bmcRequest struct {
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// getBMC serves GET /machines/{id}/bmc: where the BMC is and where its
// credentials come from, never the credentials.
func (a *api) getBMC(w http.ResponseWriter, r *http.Request) {
	info, err := a.b.MachineBMC(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// putBMC serves PUT /machines/{id}/bmc.
func (a *api) putBMC(w http.ResponseWriter, r *http.Request) {
	var req bmcRequest
	if err := decodeBody(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	info, err := a.b.SetBMC(r.Context(), chi.URLParam(r, "id"), req.Address, req.Username, req.Password, actor(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// deleteBMC serves DELETE /machines/{id}/bmc.
func (a *api) deleteBMC(w http.ResponseWriter, r *http.Request) {
	if err := a.b.DeleteBMC(r.Context(), chi.URLParam(r, "id"), actor(r)); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sendBackFunc is Reprovision or Wipe.
type sendBackFunc func(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *boot.PowerResult, error)
