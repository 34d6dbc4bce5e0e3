package gitsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// remoteName is the remote's name in the local repository.
const remoteName = "origin"

// remote is the parsed --profiles-git URL.
type remote struct {
	url    string // what go-git is given: the URL without user and password
	scheme string // https, http, ssh, git or file
	user   string // the URL's user, for ssh and basic auth; "" if none
	host   string // ssh: the server's host name
	port   string // ssh: the server's port
}

// scpLike matches user@host:path, the ssh shorthand.
var scpLike = regexp.MustCompile(`^(?:([^@/]+)@)?([^@/:]+):(.*)$`)

func parseRemote(raw string) (remote, error) {
	if !strings.Contains(raw, "://") {
		m := scpLike.FindStringSubmatch(raw)
		if m == nil {
			return remote{}, errors.New("--profiles-git: want an https://, ssh://, git:// or file:// URL, or user@host:path")
		}
		if !strings.Contains(m[3], "/") {
			// go-git reads host:name without a slash as a local path.
			return remote{}, errors.New("--profiles-git: write host:name as ssh://host/name, or with a directory (host:dir/name)")
		}
		clean := m[2] + ":" + m[3]
		r := remote{url: clean, scheme: "ssh", user: m[1], host: m[2], port: "22"}
		// go-git also reads host:port:path; take host and port as it will.
		if ep, err := transport.NewEndpoint(clean); err == nil && ep.Protocol == "ssh" && ep.Port != 0 {
			r.host, r.port = ep.Host, strconv.Itoa(ep.Port)
		}
		return r, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, password included.
		return remote{}, errors.New("--profiles-git: not a URL")
	}
	r := remote{scheme: strings.ToLower(u.Scheme)}
	switch r.scheme {
	case "https", "http", "ssh", "git", "file":
	default:
		return remote{}, fmt.Errorf("--profiles-git: scheme %q: want https, http, ssh, git or file", u.Scheme)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return remote{}, errors.New("--profiles-git: the URL holds a password; put the token in --profiles-git-token-file")
		}
		r.user = u.User.Username()
		u.User = nil
	}
	if r.scheme != "file" && u.Host == "" {
		return remote{}, fmt.Errorf("--profiles-git: %s URL without a host", r.scheme)
	}
	if r.scheme == "file" && u.Path == "" {
		return remote{}, errors.New("--profiles-git: file URL without a path")
	}
	r.url = u.String()
	r.host, r.port = u.Hostname(), u.Port()
	if r.port == "" {
		r.port = "22"
	}
	return r, nil
}

// checkCredentials refuses credentials the scheme cannot use, and an ssh URL
// without a key: credentials come from files, not from an agent.
func (r remote) checkCredentials(cfg Config) error {
	switch {
	case cfg.TokenFile != "" && r.scheme != "https" && r.scheme != "http":
		return fmt.Errorf("--profiles-git-token-file is for https URLs, not %s", r.scheme)
	case cfg.SSHKeyFile != "" && r.scheme != "ssh":
		return fmt.Errorf("--profiles-git-ssh-key is for ssh URLs, not %s", r.scheme)
	case cfg.KnownHostsFile != "" && r.scheme != "ssh":
		return fmt.Errorf("--profiles-git-known-hosts is for ssh URLs, not %s", r.scheme)
	case r.scheme == "ssh" && cfg.SSHKeyFile == "":
		return errors.New("an ssh URL needs --profiles-git-ssh-key (a deploy key without passphrase)")
	}
	return nil
}

// cleartextToken reports a token that would cross the network unencrypted.
func (r remote) cleartextToken(cfg Config) bool {
	if cfg.TokenFile == "" || r.scheme != "http" {
		return false
	}
	host := strings.Trim(strings.Split(strings.TrimPrefix(r.url, "http://"), "/")[0], "[]")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	return host != "localhost" && (ip == nil || !ip.IsLoopback())
}

// credentials reads the credential files anew (so that a rotated token or
// key is used at the next fetch) and returns the auth method and the secret
// strings that must not leave the package.
func (s *Syncer) credentials() (transport.AuthMethod, []string, error) {
	user := s.remote.user
	if user == "" {
		user = "git"
	}
	switch {
	case s.cfg.TokenFile != "":
		b, err := os.ReadFile(s.cfg.TokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read --profiles-git-token-file: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return nil, nil, fmt.Errorf("--profiles-git-token-file %s is empty", s.cfg.TokenFile)
		}
		return &githttp.BasicAuth{Username: user, Password: token}, []string{token}, nil
	case s.cfg.SSHKeyFile != "":
		pem, err := os.ReadFile(s.cfg.SSHKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read --profiles-git-ssh-key: %w", err)
		}
		keys, err := gitssh.NewPublicKeys(user, pem, "")
		if err != nil {
			// x/crypto's words ("passphrase protected", "no key found") hold no key material.
			return nil, nil, fmt.Errorf("--profiles-git-ssh-key %s: %v", s.cfg.SSHKeyFile, err)
		}
		cb, algos, err := s.hostKeys()
		if err != nil {
			return nil, nil, err
		}
		keys.HostKeyCallback, keys.HostKeyAlgorithms = cb, algos
		return keys, nil, nil
	}
	return nil, nil, nil
}

// hostKeys checks the ssh server against known_hosts, always: an unknown or
// changed key fails the fetch with a message that says what to do.
func (s *Syncer) hostKeys() (ssh.HostKeyCallback, []string, error) {
	var files []string
	where := "$SSH_KNOWN_HOSTS, ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts"
	if s.cfg.KnownHostsFile != "" {
		files, where = []string{s.cfg.KnownHostsFile}, s.cfg.KnownHostsFile
		if _, err := os.Stat(s.cfg.KnownHostsFile); err != nil {
			return nil, nil, fmt.Errorf("--profiles-git-known-hosts: %w", err)
		}
	}
	db, err := gitssh.NewKnownHostsDb(files...)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh host keys (%s): %v; pass --profiles-git-known-hosts", where, err)
	}
	check := db.HostKeyCallback()
	cb := func(host string, addr net.Addr, key ssh.PublicKey) error {
		err := check(host, addr, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) == 0:
			return fmt.Errorf("host key of %s (%s %s) is not in %s: add it, e.g. ssh-keyscan -p %s %s >> known_hosts, after checking its fingerprint",
				host, key.Type(), ssh.FingerprintSHA256(key), where, s.remote.port, s.remote.host)
		case errors.As(err, &ke):
			return fmt.Errorf("host key of %s (%s %s) does not match %s: the server changed its key or someone is in between; refusing to connect",
				host, key.Type(), ssh.FingerprintSHA256(key), where)
		}
		return fmt.Errorf("check the host key of %s: %w", host, err)
	}
	return cb, db.HostKeyAlgorithms(net.JoinHostPort(s.remote.host, s.remote.port)), nil
}

// fetch brings the commit that want (a ref or a commit hash, as
// Config.Ref) names into the local repository, fetching only when the
// remote names a commit the repository lacks, and returns it with the ref's
// full name.
func (s *Syncer) fetch(ctx context.Context, want string) (*object.Commit, string, error) {
	auth, secrets, err := s.credentials()
	if err != nil {
		return nil, "", err
	}
	c, ref, err := s.fetchWith(ctx, auth, want)
	if err != nil {
		return nil, "", scrub(err, secrets)
	}
	return c, ref, nil
}

func (s *Syncer) fetchWith(ctx context.Context, auth transport.AuthMethod, want string) (*object.Commit, string, error) {
	repo, err := s.open()
	if err != nil {
		return nil, "", err
	}
	if isHash(want) {
		// A commit never changes: once here, no network is needed.
		if c, err := commitOf(repo, plumbing.NewHash(want)); err == nil {
			return c, want, nil
		}
	}
	rem, err := repo.Remote(remoteName)
	if err != nil {
		return nil, "", fmt.Errorf("local repository: %w", err)
	}
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return nil, "", s.networkError("list the refs of", err)
	}
	name, hash, err := pick(refs, want)
	if err != nil {
		return nil, "", err
	}
	if c, err := commitOf(repo, hash); err == nil {
		return c, refLabel(name, want), nil
	}
	specs := []config.RefSpec{config.RefSpec("+" + name + ":" + name)}
	if name == "" || name == plumbing.HEAD.String() {
		// A commit hash, or a detached HEAD: take every branch and tag.
		specs = []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: remoteName, RefSpecs: specs, Auth: auth, Tags: git.NoTags, Force: true})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, "", s.networkError("fetch", err)
	}
	if hash.IsZero() {
		hash = plumbing.NewHash(want)
	}
	c, err := commitOf(repo, hash)
	if err != nil {
		if isHash(want) {
			return nil, "", fmt.Errorf("commit %s is not on any branch or tag of %s", want, s.remote.url)
		}
		return nil, "", fmt.Errorf("after fetching %s: %w", name, err)
	}
	return c, refLabel(name, want), nil
}

// networkError wraps a transport error with what was being done and, for
// the usual causes, what to check. The text is kept to one line: servers put
// newlines in theirs.
func (s *Syncer) networkError(doing string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(err.Error(), "ssh: unable to authenticate"):
		hint = " (check --profiles-git-token-file)"
		if s.remote.scheme == "ssh" {
			hint = " (check --profiles-git-ssh-key and that the server knows its public key)"
		}
	case errors.Is(err, transport.ErrRepositoryNotFound):
		hint = " (check the URL, and the credentials: some servers answer not found to a wrong token)"
	case errors.Is(err, context.DeadlineExceeded):
		hint = fmt.Sprintf(" (no answer within %v)", s.cfg.Timeout)
	}
	msg := fmt.Sprintf("%s %s: %s%s", doing, s.remote.url, strings.Join(strings.Fields(err.Error()), " "), hint)
	return &cleanError{msg: msg, err: err}
}

// pick finds the ref to follow among the remote's: want as a full ref name, a
// branch, a tag, or a commit hash (zero hash, name ""); "" is what HEAD names.
func pick(refs []*plumbing.Reference, want string) (string, plumbing.Hash, error) {
	byName := map[plumbing.ReferenceName]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name()] = r
	}
	hashOf := func(n plumbing.ReferenceName) (plumbing.Hash, bool) {
		r, ok := byName[n]
		if !ok || r.Type() != plumbing.HashReference {
			return plumbing.ZeroHash, false
		}
		return r.Hash(), true
	}
	switch {
	case want == "":
		head, ok := byName[plumbing.HEAD]
		if !ok {
			return "", plumbing.ZeroHash, errors.New("the remote names no HEAD (an empty repository?); pass --profiles-git-ref")
		}
		if head.Type() == plumbing.SymbolicReference {
			if h, ok := hashOf(head.Target()); ok {
				return head.Target().String(), h, nil
			}
			return "", plumbing.ZeroHash, fmt.Errorf("the remote's HEAD names %s, which has no commit yet", head.Target())
		}
		return plumbing.HEAD.String(), head.Hash(), nil
	case isHash(want):
		return "", plumbing.ZeroHash, nil
	case strings.HasPrefix(want, "refs/"):
		if h, ok := hashOf(plumbing.ReferenceName(want)); ok {
			return want, h, nil
		}
	default:
		for _, n := range []plumbing.ReferenceName{plumbing.NewBranchReferenceName(want), plumbing.NewTagReferenceName(want)} {
			if h, ok := hashOf(n); ok {
				return n.String(), h, nil
			}
		}
	}
	return "", plumbing.ZeroHash, fmt.Errorf("--profiles-git-ref %q: no such branch or tag on the remote", want)
}

// refLabel is Revision.Ref: the full ref name, or the hash followed.
func refLabel(name, want string) string {
	if name == "" {
		return want
	}
	return name
}

var hashRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

func isHash(s string) bool { return hashRE.MatchString(s) }

// commitOf returns the commit h names, peeling annotated tags.
func commitOf(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 8 {
		obj, err := repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, fmt.Errorf("%s is a %s, not a commit", h, obj.Type())
		}
	}
	return nil, fmt.Errorf("%s: tags nested too deep", h)
}

// open opens (or creates) the bare repository under Dir and points its
// remote at the configured URL.
func (s *Syncer) open() (*git.Repository, error) {
	if s.repo == nil {
		dir := filepath.Join(s.cfg.Dir, "repo")
		repo, err := git.PlainOpen(dir)
		if errors.Is(err, git.ErrRepositoryNotExists) {
			if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
				return nil, fmt.Errorf("create %s: %w", s.cfg.Dir, err)
			}
			repo, err = git.PlainInit(dir, true)
		}
		if err != nil {
			return nil, fmt.Errorf("open the local repository %s: %w", dir, err)
		}
		s.repo = repo
	}
	rem, err := s.repo.Remote(remoteName)
	if err == nil && len(rem.Config().URLs) == 1 && rem.Config().URLs[0] == s.remote.url {
		return s.repo, nil
	}
	if err == nil {
		if err := s.repo.DeleteRemote(remoteName); err != nil {
			return nil, fmt.Errorf("local repository: %w", err)
		}
	}
	if _, err := s.repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{s.remote.url}}); err != nil {
		return nil, fmt.Errorf("local repository: %w", err)
	}
	return s.repo, nil
}

func revisionOf(c *object.Commit, ref string) Revision {
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	h := c.Hash.String()
	return Revision{Commit: h, Short: h[:12], Subject: strings.TrimSpace(subject), Author: c.Author.Name, Time: c.Committer.When, Ref: ref}
}

// scrub removes secrets from err's text: a credential must never reach a
// log line or an API answer, whatever a transport puts in its errors.
func scrub(err error, secrets []string) error {
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "[redacted]")
		}
	}
	clean = userinfoRE.ReplaceAllString(clean, "$1")
	if clean == msg {
		return err
	}
	return &cleanError{msg: clean, err: err}
}

// userinfoRE matches the user:password@ of URLs in error texts.
var userinfoRE = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@`)

// cleanError is an error whose text was rewritten: secrets removed, or put
// on one line. Unwrap keeps errors.Is working for sentinels (deadlines,
// authentication failures).
type cleanError struct {
	msg string
	err error
}

func (e *cleanError) Error() string { return e.msg }
func (e *cleanError) Unwrap() error { return e.err }
