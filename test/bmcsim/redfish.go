package bmcsim

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The resources of a single-node BMC: one system, its manager and chassis.
const (
	rootPath           = "/redfish/v1"
	systemsPath        = rootPath + "/Systems"
	systemPath         = systemsPath + "/1"
	resetPath          = systemPath + "/Actions/ComputerSystem.Reset"
	managersPath       = rootPath + "/Managers"
	managerPath        = managersPath + "/1"
	chassisListPath    = rootPath + "/Chassis"
	chassisPath        = chassisListPath + "/1"
	sessionServicePath = rootPath + "/SessionService"
	sessionsPath       = sessionServicePath + "/Sessions"

	redfishVersion = "1.17.0"
	baseRegistry   = "Base.1.17."
)

// bootTarget pairs a BootSourceOverrideTarget value with the Boot device it
// stands for.
type bootTarget struct{ target, device string }

// bootTargets are the override targets the simulator allows.
var bootTargets = []bootTarget{
	{"None", "none"},
	{"Pxe", "pxe"},
	{"Hdd", "disk"},
	{"Cd", "cdrom"},
	{"BiosSetup", "bios"},
}

// resetTypes are the ComputerSystem.Reset types the simulator carries out.
var resetTypes = []string{
	"On", "ForceOn", "ForceOff", "GracefulShutdown", "GracefulRestart",
	"ForceRestart", "PowerCycle", "PushPowerButton", "Nmi",
}

// Redfish is a Redfish service (DMTF DSP0266) for one ComputerSystem backed
// by a Chassis: enough of the schema for bmclib's gofish provider to log in,
// read and set power and the boot override, and log out. Clients log in with
// a session (POST to the Sessions collection, then X-Auth-Token) or send HTTP
// Basic credentials with every request. The system carries an ETag, and a
// PATCH or Reset whose If-Match names another state fails with 412, as on
// real BMCs. Redfish serializes requests, as a BMC's single web server does.
type Redfish struct {
	chassis  Chassis
	user     string
	password string

	mu           sync.Mutex
	sessions     map[int]string // session id to its token
	lastSession  int
	failedLogins int
	requests     map[string]int
}

// NewRedfish returns a service for c that accepts one account.
func NewRedfish(c Chassis, user, password string) *Redfish {
	return &Redfish{
		chassis:  c,
		user:     user,
		password: password,
		sessions: map[int]string{},
		requests: map[string]int{},
	}
}

// StartRedfish serves a Redfish BMC for c over HTTPS on a loopback port until
// t ends. It returns the service and its host:port.
func StartRedfish(t testing.TB, c Chassis, user, password string) (*Redfish, string) {
	t.Helper()
	rf := NewRedfish(c, user, password)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("bmcsim: redfish listener: %v", err)
	}
	stop, err := rf.Serve(l)
	if err != nil {
		l.Close()
		t.Fatalf("bmcsim: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("bmcsim: redfish server: %v", err)
		}
	})
	return rf, l.Addr().String()
}

// Serve answers HTTPS on l, with a self-signed certificate made for l's
// address, until stop is called. stop closes l and returns the error that
// ended serving early, if any.
func (rf *Redfish) Serve(l net.Listener) (stop func() error, err error) {
	cert, err := selfSigned(l.Addr())
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           rf,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	return func() error {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, nil
}

func selfSigned(addr net.Addr) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("redfish certificate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "bmcsim"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
	}
	if a, ok := addr.(*net.TCPAddr); ok {
		tmpl.IPAddresses = []net.IP{a.IP}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("redfish certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// FailedLogins counts rejected credentials: session logins and requests
// with HTTP Basic auth. The service never locks the account.
func (rf *Redfish) FailedLogins() int {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return rf.failedLogins
}

// Requests counts the requests received, keyed by method and path as sent,
// e.g. "POST /redfish/v1/SessionService/Sessions".
func (rf *Redfish) Requests() map[string]int {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return maps.Clone(rf.requests)
}

// Sessions returns how many login sessions are open.
func (rf *Redfish) Sessions() int {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return len(rf.sessions)
}

// jsonObject is a JSON object: a Redfish resource or error body.
type jsonObject = map[string]any

func odataRef(path string) jsonObject { return jsonObject{"@odata.id": path} }

// apiError is a failed request as Redfish reports it: an HTTP status and a
// message from the DMTF Base message registry.
type apiError struct {
	status int
	id     string // Base registry MessageId without its prefix, e.g. "ResourceMissingAtURI"
	msg    string
}

func newAPIError(status int, id, format string, args ...any) *apiError {
	return &apiError{status: status, id: id, msg: fmt.Sprintf(format, args...)}
}

func (rf *Redfish) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	rf.requests[r.Method+" "+r.URL.Path]++
	if e := rf.serve(w, r); e != nil {
		writeResource(w, e.status, jsonObject{"error": jsonObject{
			"code":    baseRegistry + e.id,
			"message": e.msg,
			"@Message.ExtendedInfo": []jsonObject{{
				"@odata.type":     "#Message.v1_1_2.Message",
				"MessageId":       baseRegistry + e.id,
				"Message":         e.msg,
				"MessageSeverity": "Critical",
			}},
		}}, "")
	}
}

func (rf *Redfish) serve(w http.ResponseWriter, r *http.Request) *apiError {
	path := strings.TrimSuffix(r.URL.Path, "/")
	// The spec leaves the service root and login open to anonymous clients.
	switch {
	case path == "/redfish":
		return getOnly(w, r, jsonObject{"v1": rootPath + "/"})
	case path == rootPath:
		return getOnly(w, r, serviceRoot())
	case path == sessionsPath && r.Method == http.MethodPost:
		return rf.login(w, r)
	}
	if e := rf.authenticate(r); e != nil {
		return e
	}
	switch path {
	case systemsPath:
		return getOnly(w, r, collectionResource(systemsPath, "ComputerSystemCollection", "Computer System Collection", systemPath))
	case systemPath:
		switch r.Method {
		case http.MethodGet:
			return rf.getSystem(w)
		case http.MethodPatch:
			return rf.patchSystem(w, r)
		}
		return notAllowed(w, "GET, PATCH")
	case resetPath:
		if r.Method != http.MethodPost {
			return notAllowed(w, "POST")
		}
		return rf.reset(w, r)
	case managersPath:
		return getOnly(w, r, collectionResource(managersPath, "ManagerCollection", "Manager Collection", managerPath))
	case managerPath:
		return getOnly(w, r, managerResource())
	case chassisListPath:
		return getOnly(w, r, collectionResource(chassisListPath, "ChassisCollection", "Chassis Collection", chassisPath))
	case chassisPath:
		return getOnly(w, r, chassisResource())
	case sessionServicePath:
		return getOnly(w, r, jsonObject{
			"@odata.id":      sessionServicePath,
			"@odata.type":    "#SessionService.v1_1_9.SessionService",
			"Id":             "SessionService",
			"Name":           "Session Service",
			"ServiceEnabled": true,
			"Sessions":       odataRef(sessionsPath),
		})
	case sessionsPath:
		if r.Method != http.MethodGet {
			return notAllowed(w, "GET, POST")
		}
		var paths []string
		for _, id := range slices.Sorted(maps.Keys(rf.sessions)) {
			paths = append(paths, sessionPath(id))
		}
		return getOnly(w, r, collectionResource(sessionsPath, "SessionCollection", "Session Collection", paths...))
	}
	if id, ok := strings.CutPrefix(path, sessionsPath+"/"); ok {
		return rf.session(w, r, id)
	}
	return newAPIError(http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI '%s' was not found.", r.URL.Path)
}

func getOnly(w http.ResponseWriter, r *http.Request, o jsonObject) *apiError {
	if r.Method != http.MethodGet {
		return notAllowed(w, "GET")
	}
	writeResource(w, http.StatusOK, o, "")
	return nil
}

func notAllowed(w http.ResponseWriter, allow string) *apiError {
	w.Header().Set("Allow", allow)
	return newAPIError(http.StatusMethodNotAllowed, "OperationNotAllowed", "The HTTP method is not allowed on this resource.")
}

func writeResource(w http.ResponseWriter, status int, o jsonObject, etag string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("OData-Version", "4.0")
	if etag != "" {
		h.Set("ETag", etag)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(o)
}

func serviceRoot() jsonObject {
	return jsonObject{
		"@odata.id":      rootPath + "/",
		"@odata.type":    "#ServiceRoot.v1_16_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": redfishVersion,
		"Vendor":         "provisiond",
		"Product":        "bmcsim",
		"Systems":        odataRef(systemsPath),
		"Managers":       odataRef(managersPath),
		"Chassis":        odataRef(chassisListPath),
		"SessionService": odataRef(sessionServicePath),
		"Links":          jsonObject{"Sessions": odataRef(sessionsPath)},
	}
}

func collectionResource(path, typ, name string, members ...string) jsonObject {
	refs := []jsonObject{}
	for _, m := range members {
		refs = append(refs, odataRef(m))
	}
	return jsonObject{
		"@odata.id":           path,
		"@odata.type":         "#" + typ + "." + typ,
		"Name":                name,
		"Members":             refs,
		"Members@odata.count": len(refs),
	}
}

func managerResource() jsonObject {
	return jsonObject{
		"@odata.id":       managerPath,
		"@odata.type":     "#Manager.v1_18_0.Manager",
		"Id":              "1",
		"Name":            "Manager",
		"ManagerType":     "BMC",
		"FirmwareVersion": "bmcsim",
		"Status":          jsonObject{"State": "Enabled", "Health": "OK"},
		"Links": jsonObject{
			"ManagerForServers": []jsonObject{odataRef(systemPath)},
			"ManagerForChassis": []jsonObject{odataRef(chassisPath)},
		},
	}
}

func chassisResource() jsonObject {
	return jsonObject{
		"@odata.id":   chassisPath,
		"@odata.type": "#Chassis.v1_23_0.Chassis",
		"Id":          "1",
		"Name":        "Chassis",
		"ChassisType": "RackMount",
		"Status":      jsonObject{"State": "Enabled", "Health": "OK"},
		"Links": jsonObject{
			"ComputerSystems": []jsonObject{odataRef(systemPath)},
			"ManagedBy":       []jsonObject{odataRef(managerPath)},
		},
	}
}

// login creates a session, answering with its token and location.
func (rf *Redfish) login(w http.ResponseWriter, r *http.Request) *apiError {
	var creds struct{ UserName, Password string }
	if e := decodeBody(r.Body, &creds); e != nil {
		return e
	}
	if creds.UserName != rf.user || creds.Password != rf.password {
		rf.failedLogins++
		return credentialsRefused(r)
	}
	rf.lastSession++
	id := rf.lastSession
	rf.sessions[id] = rand.Text()
	w.Header().Set("X-Auth-Token", rf.sessions[id])
	w.Header().Set("Location", sessionPath(id))
	writeResource(w, http.StatusCreated, sessionResource(id, rf.user), "")
	return nil
}

func sessionPath(id int) string { return sessionsPath + "/" + strconv.Itoa(id) }

func sessionResource(id int, user string) jsonObject {
	return jsonObject{
		"@odata.id":   sessionPath(id),
		"@odata.type": "#Session.v1_7_0.Session",
		"Id":          strconv.Itoa(id),
		"Name":        "User Session",
		"UserName":    user,
		"SessionType": "Redfish",
	}
}

// session answers GET and DELETE (logout) of one session.
func (rf *Redfish) session(w http.ResponseWriter, r *http.Request, id string) *apiError {
	n, err := strconv.Atoi(id)
	if _, ok := rf.sessions[n]; err != nil || !ok {
		return newAPIError(http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI '%s' was not found.", r.URL.Path)
	}
	switch r.Method {
	case http.MethodGet:
		writeResource(w, http.StatusOK, sessionResource(n, rf.user), "")
		return nil
	case http.MethodDelete:
		delete(rf.sessions, n)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return notAllowed(w, "GET, DELETE")
}

// authenticate accepts a session's X-Auth-Token or the account's HTTP Basic
// credentials.
func (rf *Redfish) authenticate(r *http.Request) *apiError {
	if token := r.Header.Get("X-Auth-Token"); token != "" {
		for _, t := range rf.sessions {
			if t == token {
				return nil
			}
		}
		return newAPIError(http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
	}
	user, password, ok := r.BasicAuth()
	if !ok {
		return newAPIError(http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
	}
	if user != rf.user || password != rf.password {
		rf.failedLogins++
		return credentialsRefused(r)
	}
	return nil
}

func credentialsRefused(r *http.Request) *apiError {
	return newAPIError(http.StatusUnauthorized, "ResourceAtUriUnauthorized",
		"While accessing the resource at '%s', the service received an authorization error 'Invalid username or password'.", r.URL.Path)
}

func internalError(err error) *apiError {
	return newAPIError(http.StatusInternalServerError, "InternalError", "The request failed due to an internal service error: %v.", err)
}

// decodeBody reads a JSON request body into v, refusing properties v lacks.
func decodeBody(body io.Reader, v any) *apiError {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	// encoding/json has no error type for an unknown field; its message is stable.
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return newAPIError(http.StatusBadRequest, "PropertyUnknown", "The property %s is not in the list of valid properties for the resource.", field)
	}
	return newAPIError(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service: %v.", err)
}

// redfishBoot is the writable part of a ComputerSystem's Boot property.
type redfishBoot struct {
	BootSourceOverrideEnabled string
	BootSourceOverrideTarget  string
	BootSourceOverrideMode    string
}

func toRedfish(b Boot) (redfishBoot, error) {
	rb := redfishBoot{BootSourceOverrideEnabled: "Disabled", BootSourceOverrideTarget: "None", BootSourceOverrideMode: "Legacy"}
	if b.EFI {
		rb.BootSourceOverrideMode = "UEFI"
	}
	if b.Device == "none" {
		return rb, nil
	}
	i := slices.IndexFunc(bootTargets, func(t bootTarget) bool { return t.device == b.Device })
	if i < 0 {
		return rb, fmt.Errorf("chassis reports unknown boot device %q", b.Device)
	}
	rb.BootSourceOverrideTarget = bootTargets[i].target
	rb.BootSourceOverrideEnabled = "Continuous"
	if b.Once {
		rb.BootSourceOverrideEnabled = "Once"
	}
	return rb, nil
}

// fromRedfish validates rb; Disabled or target None means no override.
func fromRedfish(rb redfishBoot) (Boot, *apiError) {
	notInList := func(value, property string) *apiError {
		return newAPIError(http.StatusBadRequest, "PropertyValueNotInList",
			"The value '%s' for the property %s is not in the list of acceptable values.", value, property)
	}
	var b Boot
	switch rb.BootSourceOverrideMode {
	case "UEFI":
		b.EFI = true
	case "Legacy":
	default:
		return b, notInList(rb.BootSourceOverrideMode, "BootSourceOverrideMode")
	}
	i := slices.IndexFunc(bootTargets, func(t bootTarget) bool { return t.target == rb.BootSourceOverrideTarget })
	if i < 0 {
		return b, notInList(rb.BootSourceOverrideTarget, "BootSourceOverrideTarget")
	}
	b.Device = bootTargets[i].device
	switch rb.BootSourceOverrideEnabled {
	case "Once":
		b.Once = true
	case "Continuous":
	case "Disabled":
		b.Device = "none"
	default:
		return b, notInList(rb.BootSourceOverrideEnabled, "BootSourceOverrideEnabled")
	}
	if b.Device == "none" {
		b.Once = false
	}
	return b, nil
}

// system renders the ComputerSystem from the Chassis's present state and
// returns it with its ETag.
func (rf *Redfish) system() (jsonObject, string, error) {
	on, err := rf.chassis.Power()
	if err != nil {
		return nil, "", err
	}
	b, err := rf.chassis.BootOverride()
	if err != nil {
		return nil, "", err
	}
	rb, err := toRedfish(b)
	if err != nil {
		return nil, "", err
	}
	power := "Off"
	if on {
		power = "On"
	}
	var targets []string
	for _, t := range bootTargets {
		targets = append(targets, t.target)
	}
	o := jsonObject{
		"@odata.id":    systemPath,
		"@odata.type":  "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id":           "1",
		"Name":         "System",
		"SystemType":   "Physical",
		"Manufacturer": "provisiond",
		"Model":        "bmcsim",
		"PowerState":   power,
		"Status":       jsonObject{"State": "Enabled", "Health": "OK"},
		"Boot": jsonObject{
			"BootSourceOverrideEnabled":                        rb.BootSourceOverrideEnabled,
			"BootSourceOverrideTarget":                         rb.BootSourceOverrideTarget,
			"BootSourceOverrideMode":                           rb.BootSourceOverrideMode,
			"BootSourceOverrideTarget@Redfish.AllowableValues": targets,
		},
		"Actions": jsonObject{"#ComputerSystem.Reset": jsonObject{
			"target":                            resetPath,
			"ResetType@Redfish.AllowableValues": resetTypes,
		}},
		"Links": jsonObject{
			"Chassis":   []jsonObject{odataRef(chassisPath)},
			"ManagedBy": []jsonObject{odataRef(managerPath)},
		},
	}
	// Maps marshal with sorted keys, so equal states hash alike.
	body, err := json.Marshal(o)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(body)
	return o, `"` + hex.EncodeToString(sum[:8]) + `"`, nil
}

func (rf *Redfish) getSystem(w http.ResponseWriter) *apiError {
	o, etag, err := rf.system()
	if err != nil {
		return internalError(err)
	}
	writeResource(w, http.StatusOK, o, etag)
	return nil
}

// ifMatch fails r if it names an ETag other than the system's present one.
func (rf *Redfish) ifMatch(r *http.Request) *apiError {
	want := r.Header.Get("If-Match")
	if want == "" {
		return nil
	}
	_, etag, err := rf.system()
	if err != nil {
		return internalError(err)
	}
	for tag := range strings.SplitSeq(want, ",") {
		if tag = strings.TrimSpace(tag); tag == "*" || tag == etag {
			return nil
		}
	}
	return newAPIError(http.StatusPreconditionFailed, "PreconditionFailed",
		"The ETag supplied did not match the ETag required to change this resource.")
}

// patchSystem applies a PATCH of the Boot property; properties it leaves out
// keep their present values.
func (rf *Redfish) patchSystem(w http.ResponseWriter, r *http.Request) *apiError {
	if e := rf.ifMatch(r); e != nil {
		return e
	}
	var patch struct{ Boot json.RawMessage }
	if e := decodeBody(r.Body, &patch); e != nil {
		return e
	}
	if patch.Boot == nil {
		return newAPIError(http.StatusBadRequest, "NoOperation",
			"The request body submitted contain no data to act upon and no changes to the resource took place.")
	}
	cur, err := rf.chassis.BootOverride()
	if err != nil {
		return internalError(err)
	}
	rb, err := toRedfish(cur)
	if err != nil {
		return internalError(err)
	}
	if e := decodeBody(bytes.NewReader(patch.Boot), &rb); e != nil {
		return e
	}
	b, e := fromRedfish(rb)
	if e != nil {
		return e
	}
	if err := rf.chassis.SetBootOverride(b); err != nil {
		return internalError(err)
	}
	return rf.getSystem(w)
}

// reset carries out the ComputerSystem.Reset action on the Chassis.
func (rf *Redfish) reset(w http.ResponseWriter, r *http.Request) *apiError {
	if e := rf.ifMatch(r); e != nil {
		return e
	}
	var req struct{ ResetType string }
	if e := decodeBody(r.Body, &req); e != nil {
		return e
	}
	if req.ResetType == "" {
		return newAPIError(http.StatusBadRequest, "ActionParameterMissing",
			"The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.")
	}
	var err error
	switch req.ResetType {
	case "On", "ForceOn":
		err = rf.chassis.SetPower(true)
	case "ForceOff", "GracefulShutdown":
		err = rf.chassis.SetPower(false)
	case "ForceRestart", "GracefulRestart":
		err = rf.chassis.Reset()
	case "PowerCycle":
		err = rf.powerCycle()
	case "PushPowerButton":
		var on bool
		if on, err = rf.chassis.Power(); err == nil {
			err = rf.chassis.SetPower(!on)
		}
	case "Nmi":
		// The Chassis models no OS for an NMI to interrupt.
	default:
		return newAPIError(http.StatusBadRequest, "ActionParameterValueNotInList",
			"The value '%s' for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.", req.ResetType)
	}
	if err != nil {
		return internalError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// powerCycle turns a machine that is on off and on again, and one that is
// off on, as BMCs do.
func (rf *Redfish) powerCycle() error {
	on, err := rf.chassis.Power()
	if err != nil {
		return err
	}
	if on {
		if err := rf.chassis.SetPower(false); err != nil {
			return err
		}
	}
	return rf.chassis.SetPower(true)
}
