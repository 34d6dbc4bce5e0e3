package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
)

// With its one real etcd member killed, a scrape still answers within the
// scrape timeout, with the store down and everything else in it: neither
// the probe nor the machine count hangs it.
func TestScrapeWithEtcdDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd")
	}
	c := etcdtest.StartCluster(t, 1)
	db, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: c.Endpoints(), Prefix: "/metrics-test", DialTimeout: 5 * time.Second}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m := New(Config{Machines: db, Store: db.Health})
	ts := httptest.NewServer(m.Handler())
	t.Cleanup(ts.Close)
	scrape := func() (string, time.Duration) {
		t.Helper()
		start := time.Now()
		// A hung scrape fails here rather than at the test binary's timeout.
		client := http.Client{Timeout: scrapeTimeout + 5*time.Second}
		resp, err := client.Get(ts.URL)
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape = %d\n%s", resp.StatusCode, body)
		}
		return string(body), time.Since(start)
	}
	if body, _ := scrape(); !strings.Contains(body, `provisiond_store_up{backend="etcd"} 1`) || !strings.Contains(body, `provisiond_machines{state="discovered"} 0`) {
		t.Fatalf("scrape with etcd up lacks the store up or the machine count:\n%s", body)
	}

	c.Kill(0)
	body, took := scrape()
	if !strings.Contains(body, `provisiond_store_up{backend="etcd"} 0`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("scrape with etcd down: want store up 0 beside the other metrics:\n%s", body)
	}
	if strings.Contains(body, "provisiond_machines{") {
		t.Errorf("scrape with etcd down still counts machines:\n%s", body)
	}
	t.Logf("scrape with etcd down took %v", took)
	if took > scrapeTimeout+time.Second {
		t.Errorf("scrape with etcd down took %v; want at most the scrape timeout %v and a little", took, scrapeTimeout)
	}
}
