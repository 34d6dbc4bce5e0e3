package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// apiClient is the operator's view of the stack under test: its /api/v1,
// asked with the API bearer token from the host it runs on.
type apiClient struct {
	base  string // e.g. http://10.99.0.2:8080/api/v1
	token string
	http  *http.Client
	actor string // the operator's name for the event log; "" sends none
}

// apiMachine is the part of GET /api/v1/machines/{id} the test reads.
type apiMachine struct {
	MAC          string `json:"mac"`
	UUID         string `json:"uuid"`
	Arch         string `json:"arch"`
	IP           string `json:"ip"`    // the last address it was seen at
	State        string `json:"state"` // "" while the machine has never been seen
	Provisioning *struct {
		SessionOpen   bool      `json:"session_open"`
		IssuedAt      time.Time `json:"issued_at"`
		ConfigFetches int       `json:"config_fetches"`
	} `json:"provisioning"`
}

// sessionOpen reports whether the machine has a provisioning session whose
// token a config request or a phone-home may present.
func (m apiMachine) sessionOpen() bool {
	return m.Provisioning != nil && m.Provisioning.SessionOpen
}

func (m apiMachine) String() string {
	if m.Provisioning == nil {
		return fmt.Sprintf("%s state %q", m.MAC, m.State)
	}
	p := m.Provisioning
	return fmt.Sprintf("%s state %q, session open %v, issued %s, config fetches %d",
		m.MAC, m.State, p.SessionOpen, p.IssuedAt.Format("15:04:05.000"), p.ConfigFetches)
}

// apiEvent is one entry of GET /api/v1/events.
type apiEvent struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Actor   string            `json:"actor"` // system, machine or api
	Fields  map[string]string `json:"fields"`
}

func (e apiEvent) String() string {
	return fmt.Sprintf("#%d %s %s by %s: %s %v", e.Seq, e.Time.Format("15:04:05.000"), e.Type, e.Actor, e.Message, e.Fields)
}

// machine returns machine id as the API shows it; a machine the stack has
// never seen has State "".
func (a *apiClient) machine(id string) (apiMachine, error) {
	var m apiMachine
	code, err := a.get("/machines/"+url.PathEscape(id), &m)
	if code == http.StatusNotFound {
		return apiMachine{}, nil
	}
	return m, err
}

// events returns machine id's events, oldest first.
func (a *apiClient) events(id string) ([]apiEvent, error) {
	var list struct {
		Events []apiEvent `json:"events"`
	}
	_, err := a.get("/events?"+url.Values{"machine": {id}}.Encode(), &list)
	return list.Events, err
}

// get decodes the JSON answer to GET path into v. Anything but 200 is an
// error, which still returns the status.
func (a *apiClient) get(path string, v any) (int, error) {
	return a.do(http.MethodGet, path, nil, v)
}

// post sends body as JSON to path and decodes the JSON answer into v, as get.
func (a *apiClient) post(path string, body, v any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	return a.do(http.MethodPost, path, b, v)
}

// do sends a request with a JSON body (nil: none) and decodes the JSON
// answer into v; anything but 200 is an error, which still returns the status.
func (a *apiClient) do(method, path string, reqBody []byte, v any) (int, error) {
	var rd io.Reader
	if reqBody != nil {
		rd = bytes.NewReader(reqBody)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.actor != "" {
		req.Header.Set("X-Provisiond-Actor", a.actor)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("api: %w", err)
	}
	defer resp.Body.Close()
	// 32 MiB: a lease list after a DHCP load test runs to megabytes.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("api: %s %s: %s: %.300s", method, path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("api: %s %s: %w: %.300s", method, path, err, body)
	}
	return resp.StatusCode, nil
}

// ofType returns the events of type typ.
func ofType(events []apiEvent, typ string) []apiEvent {
	var out []apiEvent
	for _, e := range events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
