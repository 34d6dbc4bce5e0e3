package gitsync

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/provisiond/provisiond/internal/gitsync/gitsynctest"
	"github.com/provisiond/provisiond/internal/testutil"
)

// git:// against git daemon on loopback: a first sync and a later commit.
func TestSyncGitDaemon(t *testing.T) {
	base := t.TempDir()
	repo := gitsynctest.NewRepo(t, filepath.Join(base, "profiles.git"))
	repo.Commit(t, "first", map[string]string{"all.yaml": goodProfiles})
	url := gitsynctest.Daemon(t, base) + "/profiles.git"
	l := &loader{}
	s, _ := newSyncer(t, url, l, Config{})
	ctx := context.Background()
	if res, err := s.Sync(ctx); err != nil || res.Outcome != Updated {
		t.Fatalf("first sync = %s, %v", res.Outcome, err)
	}
	second := repo.Commit(t, "second", map[string]string{"all.yaml": goodProfiles, "d.yaml": "kind: Default\nprofile: p\n"})
	start := time.Now()
	res, err := s.Sync(ctx)
	if err != nil || res.Outcome != Updated || res.Fetched.Commit != second {
		t.Fatalf("second sync = %s %+v, %v", res.Outcome, res.Fetched, err)
	}
	t.Logf("git:// commit to live: %v", time.Since(start))
	if l.live.Default == nil {
		t.Error("the second commit's Default is not live")
	}
}

// http:// against git http-backend behind basic auth: a wrong token fails
// clearly, a rotated token file is read at the next fetch, and no token
// reaches a log line, an error or the state directory.
func TestSyncHTTPToken(t *testing.T) {
	root := t.TempDir()
	repo := gitsynctest.NewRepo(t, filepath.Join(root, "infra", "profiles.git"))
	good := repo.Commit(t, "first", map[string]string{"all.yaml": goodProfiles})
	const token, wrong = "glpat-RIGHT-7f3a9c2e1b", "glpat-WRONG-0d4e8b6a5c"
	srv := gitsynctest.HTTPBackend(t, root, token)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(srv.URL, "http://", "http://deploy-bot@", 1) + "/infra/profiles.git"
	dir := filepath.Join(t.TempDir(), "profiles-git")
	s, logs := newSyncer(t, url, &loader{}, Config{Dir: dir, TokenFile: tokenFile})
	ctx := context.Background()

	res, err := s.Sync(ctx)
	if res.Outcome != Failed || !errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Fatalf("sync with a wrong token = %s, %v; want an authentication failure", res.Outcome, err)
	}
	for _, w := range []string{"authentication required", "check --profiles-git-token-file", strings.TrimPrefix(srv.URL, "http://") + "/infra/profiles.git"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	t.Logf("wrong token: %v", err)
	if srv.Refusals() == 0 {
		t.Error("the server refused nothing")
	}

	// Rotation: the file is read again at the next fetch.
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = s.Sync(ctx)
	if err != nil || res.Outcome != Updated || res.Fetched.Commit != good {
		t.Fatalf("sync with the right token = %s, %v", res.Outcome, err)
	}

	for _, secret := range []string{token, wrong} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a token is in the log:\n%s", logs.String())
		}
		if strings.Contains(err2s(err)+err2s(res.Err), secret) {
			t.Error("a token is in an error")
		}
	}
	if strings.Contains(logs.String(), "deploy-bot") {
		t.Errorf("the URL's user is in the log:\n%s", logs.String())
	}
	// Not in the local repository's config either.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && (strings.Contains(string(b), token) || strings.Contains(string(b), "deploy-bot")) {
			t.Errorf("%s holds a credential", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func err2s(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A server that never answers is given up after Timeout.
func TestSyncTimeout(t *testing.T) {
	s, _ := newSyncer(t, "git://"+testutil.SilentAddr(t)+"/p.git", &loader{}, Config{Timeout: 300 * time.Millisecond})
	start := time.Now()
	res, err := s.Sync(context.Background())
	took := time.Since(start)
	if res.Outcome != Failed || err == nil || took > 5*time.Second {
		t.Fatalf("sync against a silent server = %s, %v after %v; want an error after ~300ms", res.Outcome, err, took)
	}
	t.Logf("gave up after %v: %v", took.Round(time.Millisecond), err)
}

// ssh against an in-process SSH server that runs git-upload-pack: host keys
// are checked (unknown and changed keys fail with what to do), the deploy key
// logs in, and the key never shows.
func TestSyncSSH(t *testing.T) {
	gitBin := gitsynctest.RequireGit(t)
	base := t.TempDir()
	repo := gitsynctest.NewRepo(t, filepath.Join(base, "profiles.git"))
	good := repo.Commit(t, "first", map[string]string{"all.yaml": goodProfiles})

	hostKey, hostPub := newSSHKey(t)
	clientKey, clientPub := newSSHKey(t)
	_, otherPub := newSSHKey(t)
	addr := sshServer(t, gitBin, hostKey, clientPub)
	_, port, _ := net.SplitHostPort(addr)

	keyFile := filepath.Join(t.TempDir(), "deploy_key")
	block, err := ssh.MarshalPrivateKey(clientKey, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(block)
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	knownHosts := func(pub ssh.PublicKey) string {
		f := filepath.Join(t.TempDir(), "known_hosts")
		line := ""
		if pub != nil {
			line = knownhosts.Line([]string{knownhosts.Normalize(addr)}, pub) + "\n"
		}
		if err := os.WriteFile(f, []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	otherKey, _ := newSSHKey(t)
	block, err = ssh.MarshalPrivateKey(otherKey, "not deploy")
	if err != nil {
		t.Fatal(err)
	}
	otherKeyFile := filepath.Join(t.TempDir(), "other_key")
	if err := os.WriteFile(otherKeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "ssh://git@" + addr + filepath.ToSlash(filepath.Join(base, "profiles.git"))
	for _, tc := range []struct {
		name       string
		knownHosts string
		key        string
		want       string
		env        string // $SSH_KNOWN_HOSTS, for the default without knownHosts
	}{
		{"unknown host", knownHosts(nil), keyFile, "is not in " + "X", ""},
		{"changed host key", knownHosts(otherPub), keyFile, "does not match", ""},
		{"key the server does not know", knownHosts(hostPub), otherKeyFile, "check --profiles-git-ssh-key", ""},
		{"known host", knownHosts(hostPub), keyFile, "", ""},
		{"default known_hosts, host unknown", "", keyFile, "is not in $SSH_KNOWN_HOSTS, ~/.ssh/known_hosts or /etc/ssh/ssh_known_hosts", knownHosts(nil)},
		{"default known_hosts, host known", "", keyFile, "", knownHosts(hostPub)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := strings.Replace(tc.want, "X", tc.knownHosts, 1)
			t.Setenv("SSH_KNOWN_HOSTS", tc.env)
			url := url
			if tc.env != "" {
				// The scp-like form, with go-git's host:port:path.
				url = "git@127.0.0.1:" + port + ":" + filepath.ToSlash(filepath.Join(base, "profiles.git"))
			}
			s, logs := newSyncer(t, url, &loader{}, Config{SSHKeyFile: tc.key, KnownHostsFile: tc.knownHosts})
			res, err := s.Sync(context.Background())
			if want == "" {
				if err != nil || res.Outcome != Updated || res.Fetched.Commit != good {
					t.Fatalf("sync over ssh = %s, %v", res.Outcome, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("sync = %s, %v; want an error with %q", res.Outcome, err, want)
			} else {
				t.Logf("%s: %v", tc.name, err)
			}
			if tc.name == "unknown host" && !strings.Contains(err.Error(), "ssh-keyscan -p "+port+" 127.0.0.1") {
				t.Errorf("error %q does not say how to add the key", err)
			}
			if strings.Contains(logs.String()+err2s(err), "PRIVATE KEY") || strings.Contains(logs.String(), string(keyPEM[40:80])) {
				t.Error("the deploy key is in the log or the error")
			}
		})
	}
}

func newSSHKey(t *testing.T) (ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, sp
}

// sshServer serves `git-upload-pack '<path>'` exec requests from the holder
// of client's key, on loopback, until the test ends; it returns its address.
func sshServer(t *testing.T, gitBin string, hostKey ed25519.PrivateKey, client ssh.PublicKey) string {
	t.Helper()
	signer, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if string(k.Marshal()) == string(client.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveSSH(c, cfg, gitBin)
			}()
		}
	}()
	return l.Addr().String()
}

func serveSSH(c net.Conn, cfg *ssh.ServerConfig, gitBin string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range chReqs {
				if req.Type != "exec" {
					_ = req.Reply(req.Type == "env", nil)
					continue
				}
				var p struct{ Cmd string }
				if ssh.Unmarshal(req.Payload, &p) != nil || !strings.HasPrefix(p.Cmd, "git-upload-pack ") {
					_ = req.Reply(false, nil)
					return
				}
				_ = req.Reply(true, nil)
				path := strings.Trim(strings.TrimPrefix(p.Cmd, "git-upload-pack "), "'")
				cmd := exec.Command(gitBin, "upload-pack", path)
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				status := uint32(0)
				if err := cmd.Run(); err != nil {
					status = 1
				}
				_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
				return
			}
		}()
	}
}
