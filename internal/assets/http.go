package assets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPError is a response other than 200 OK. It matches ErrNotFound for 404
// and 410.
type HTTPError struct {
	URL    string
	Status string // as the server said it, e.g. "404 Not Found"
	Code   int
}

func (e *HTTPError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }

func (e *HTTPError) Is(target error) bool {
	return target == ErrNotFound && (e.Code == http.StatusNotFound || e.Code == http.StatusGone)
}

// newClient returns a client with bounded connect, TLS and header waits but no
// overall deadline: a rootfs image is large and a slow link is no error.
// Stalled bodies are caught by the stall watchdog instead.
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 30 * time.Second
	t.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: t, CheckRedirect: noDowngrade}
}

// noDowngrade follows at most 10 redirects and never from https to http:
// Talos files are trusted because they came over HTTPS (GitHub redirects
// release downloads to its object store).
func noDowngrade(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing redirect from https to %s", req.URL.Redacted())
	}
	return nil
}

// get starts a GET of url and returns the body when the status is 200. The
// body must be closed; reads from it fail once nothing arrived for stall.
func (f *Fetcher) get(ctx context.Context, url string) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel(nil)
		return nil, 0, fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		cancel(nil)
		return nil, 0, fmt.Errorf("GET %s: %w", url, networkError{unwrapURLError(err)})
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel(nil)
		return nil, 0, &HTTPError{URL: url, Status: resp.Status, Code: resp.StatusCode}
	}
	stall := f.Stall
	if stall <= 0 {
		stall = DefaultStall
	}
	return newWatchedBody(ctx, resp.Body, url, stall, cancel), resp.ContentLength, nil
}

// getSmall fetches a metadata file (signature, checksums, stream JSON) of at
// most limit bytes.
func (f *Fetcher) getSmall(ctx context.Context, url string, limit int64) ([]byte, error) {
	body, size, err := f.get(ctx, url)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if size > limit {
		return nil, fmt.Errorf("GET %s: %w: %d bytes, at most %d expected", url, ErrTooLarge, size, limit)
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, readError(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("GET %s: %w: more than %d bytes", url, ErrTooLarge, limit)
	}
	return b, nil
}

// networkError is a request that got no answer, or whose answer stopped
// arriving: it is ErrNetwork, in the transport's own words.
type networkError struct{ err error }

func (e networkError) Error() string        { return e.err.Error() }
func (e networkError) Unwrap() error        { return e.err }
func (e networkError) Is(target error) bool { return target == ErrNetwork }

// readError marks a failed read of a response body as ErrNetwork.
func readError(err error) error {
	if errors.Is(err, ErrNetwork) {
		return err
	}
	return networkError{err}
}

// trustFileError is the failure to fetch the signature or checksum file
// (what) of the file name. One the server does not have (404, 410) is
// ErrUnverified: nothing vouches for the file then. Any other failure is
// left as it is: a network failure or a server error says nothing about the
// release, and must not read like a bad signature.
func trustFileError(name, what string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s: no %s: %w", ErrUnverified, name, what, err)
	}
	return fmt.Errorf("%s: %s: %w", name, what, err)
}

// unwrapURLError drops *url.Error's "Get \"...\": " prefix; callers name the
// URL themselves.
func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// errStalled cancels a request whose body stopped arriving.
type errStalled struct {
	url   string
	after time.Duration
}

func (e errStalled) Error() string {
	return fmt.Sprintf("GET %s: nothing received for %s", e.url, e.after)
}

func (e errStalled) Is(target error) bool { return target == ErrNetwork }

// watchedBody cancels its request when no byte arrives for a while: a server
// that accepts a connection and then goes silent must not hang the command.
type watchedBody struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	after  time.Duration
	once   sync.Once
}

func newWatchedBody(ctx context.Context, body io.ReadCloser, url string, after time.Duration, cancel context.CancelCauseFunc) *watchedBody {
	w := &watchedBody{ReadCloser: body, ctx: ctx, cancel: cancel, after: after}
	w.timer = time.AfterFunc(after, func() { cancel(errStalled{url, after}) })
	return w
}

func (w *watchedBody) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	if n > 0 {
		w.timer.Reset(w.after)
	}
	if err != nil && err != io.EOF {
		var st errStalled
		if errors.As(context.Cause(w.ctx), &st) {
			err = st
		}
	}
	return n, err
}

func (w *watchedBody) Close() error {
	w.once.Do(func() {
		w.timer.Stop()
		w.cancel(nil)
	})
	return w.ReadCloser.Close()
}
