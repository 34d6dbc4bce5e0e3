package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
)

// TestGitElection: of two instances on one prefix one leads; its
// publications reach the other's watch; a resignation hands over at once,
// and the old term's writes are then refused (fenced), not applied.
func TestGitElection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := freshPrefix()
	a, b := open(t, prefix, store.Options{}), open(t, prefix, store.Options{})

	ta, err := a.CampaignGit(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	elected := make(chan *etcdstore.GitTerm, 1)
	go func() {
		tb, err := b.CampaignGit(ctx, "b")
		if err != nil {
			t.Error(err)
			close(elected)
			return
		}
		elected <- tb
	}()
	select {
	case <-elected:
		t.Fatal("b elected while a leads")
	case <-time.After(300 * time.Millisecond):
	}

	states := make(chan etcdstore.GitState, 16)
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		b.WatchGit(wctx, func(st etcdstore.GitState) { states <- st })
	}()
	defer func() { stopWatch(); <-watched }()
	waitState := func(what string, ok func(etcdstore.GitState) bool) etcdstore.GitState {
		t.Helper()
		for {
			select {
			case st := <-states:
				if ok(st) {
					return st
				}
			case <-ctx.Done():
				t.Fatalf("watch: no state with %s", what)
			}
		}
	}
	waitState("leader a", func(st etcdstore.GitState) bool { return st.Leader == "a" && st.Published == nil })

	c1 := etcdstore.GitCommit{Commit: "1111111111111111111111111111111111111111", Ref: "refs/heads/main", Subject: "one", Leader: "a", At: time.Now().UTC()}
	if err := ta.Publish(ctx, c1); err != nil {
		t.Fatal(err)
	}
	st := waitState("c1 published", func(st etcdstore.GitState) bool { return st.Published != nil })
	if st.Published.Commit != c1.Commit || st.Published.Subject != "one" || st.Published.Leader != "a" || st.Rejected != nil {
		t.Errorf("watched %+v; want c1 published by a", st.Published)
	}
	bad := etcdstore.GitCommit{Commit: "2222222222222222222222222222222222222222", Subject: "typo", Error: "all.yaml:3: unknown profile", Leader: "a"}
	if err := ta.Reject(ctx, bad); err != nil {
		t.Fatal(err)
	}
	st = waitState("a rejection", func(st etcdstore.GitState) bool { return st.Rejected != nil })
	if st.Rejected.Error != bad.Error || st.Published.Commit != c1.Commit {
		t.Errorf("state %+v %+v; want c1 still published and the rejection beside it", st.Published, st.Rejected)
	}

	start := time.Now()
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ta.Done():
	case <-time.After(5 * time.Second):
		t.Error("a resigned term is not done")
	}
	var tb *etcdstore.GitTerm
	select {
	case tb = <-elected:
	case <-time.After(5 * time.Second):
		t.Fatal("b not elected after a resigned")
	}
	if tb == nil {
		t.FailNow()
	}
	t.Logf("handover on resignation: %v", time.Since(start))
	waitState("leader b", func(st etcdstore.GitState) bool { return st.Leader == "b" })

	stale := c1
	stale.Commit, stale.Leader = "3333333333333333333333333333333333333333", "a"
	if err := ta.Publish(ctx, stale); !errors.Is(err, etcdstore.ErrNotGitLeader) {
		t.Errorf("the old term's Publish: %v; want ErrNotGitLeader", err)
	}
	c4 := c1
	c4.Commit, c4.Leader = "4444444444444444444444444444444444444444", "b"
	if err := tb.Publish(ctx, c4); err != nil {
		t.Fatal(err)
	}
	got, err := a.GitState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Published == nil || got.Published.Commit != c4.Commit || got.Leader != "b" {
		t.Errorf("state after handover: %+v leader %q; want c4 published by b", got.Published, got.Leader)
	}
	if err := tb.Resign(ctx); err != nil {
		t.Error(err)
	}
}

// TestGitCampaignCancelled: a campaign given up leaves no key behind that
// would block the next leader.
func TestGitCampaignCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := freshPrefix()
	a, b := open(t, prefix, store.Options{}), open(t, prefix, store.Options{})
	ta, err := a.CampaignGit(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	defer stop()
	if _, err := b.CampaignGit(short, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a campaign given up: %v; want the deadline", err)
	}
	if err := ta.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := a.CampaignGit(ctx, "a again")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := b.GitState(ctx); err != nil || st.Leader != "a again" {
		t.Errorf("leader %q, %v; want a again", st.Leader, err)
	}
	_ = c.Resign(ctx)
}

// TestGitTermLeaseLost: a term whose lease is gone (as when etcd expires it
// while the leader is cut off) ends: its writes are refused, Done closes,
// and another instance is elected without waiting for it.
func TestGitTermLeaseLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := freshPrefix()
	a, b := open(t, prefix, store.Options{}), open(t, prefix, store.Options{})
	ta, err := a.CampaignGit(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, prefix+"/git/leader/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read the election: %v %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	c := etcdstore.GitCommit{Commit: "5555555555555555555555555555555555555555", Leader: "a"}
	if err := ta.Publish(ctx, c); !errors.Is(err, etcdstore.ErrNotGitLeader) {
		t.Errorf("Publish after the lease was lost: %v; want ErrNotGitLeader", err)
	}
	select {
	case <-ta.Done():
	case <-time.After(5 * time.Second):
		t.Error("the term of a lost lease is not done")
	}
	tb, err := b.CampaignGit(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.GitState(ctx)
	if err != nil || st.Leader != "b" || st.Published != nil {
		t.Errorf("state %+v, %v; want b leading and nothing published", st, err)
	}
	if err := tb.Resign(ctx); err != nil {
		t.Error(err)
	}
}
