package etcdtest_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
)

// TestClusterSurvivesLeaderKill: with the leader of three killed, a client
// given all endpoints still writes; the restarted member catches up and
// serves that write itself.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	start := time.Now()
	c := etcdtest.StartCluster(t, 3)
	t.Logf("3 members ready in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	leader, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(leader)
	if c.Running(leader) {
		t.Fatalf("member %d still running after Kill", leader)
	}
	// A write forwarded to the dead leader is lost and times out (etcd
	// does not retry it), so wait for the election first, as a client would.
	start = time.Now()
	for {
		next, err := c.Leader(ctx)
		if err == nil && next != leader {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no new leader after the kill: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("new leader after %v", time.Since(start).Round(time.Millisecond))
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "written without the old leader"); err != nil {
		t.Fatalf("Put with the leader down: %v", err)
	}

	start = time.Now()
	c.Start(leader)
	t.Logf("restarted member answered in %v", time.Since(start).Round(time.Millisecond))
	for i, ep := range c.Endpoints() {
		if !c.Running(i) {
			t.Errorf("member %d not running", i)
		}
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		r, err := one.Get(ctx, "k", clientv3.WithSerializable()) // the member's own copy
		one.Close()
		if err != nil || len(r.Kvs) != 1 {
			t.Errorf("member %d: Get = %v, %v; want the write", i, r, err)
		}
	}
}
