package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/store"
)

// eventLog is P/meta/events: the bounds of the log. Every append compares
// its ModRevision, so appends are serialized by etcd and Seq grows in
// commit order without gaps or repeats; trimming moves First, so the count
// is Last-First+1 without a scan and reads start at a live key.
type eventLog struct {
	Last  uint64 `json:"last"`  // the last Seq handed out; 0: none yet
	First uint64 `json:"first"` // the oldest Seq kept; Last+1 when the log is empty
}

func decodeEventLog(kvs []*mvccpb.KeyValue) (eventLog, int64, error) {
	lg := eventLog{First: 1}
	rev, err := getJSON(kvs, &lg)
	return lg, rev, err
}

// appendOps stamps es with the next Seqs and now and returns the operations
// that store them, trim the log to MaxEvents (and, each time Seq passes a
// multiple of ageCheckEvery, MaxEventAge) and move its bounds. The caller
// commits them with a compare on the log's ModRevision as read in lg. An
// event trimmed at birth (a Change returning more than MaxEvents) is never
// put: etcd refuses a transaction that puts a key it deletes.
func (s *Store) appendOps(ctx context.Context, lg eventLog, es []store.Event, now time.Time) ([]clientv3.Op, []store.Event, error) {
	next := eventLog{Last: lg.Last + uint64(len(es)), First: lg.First}
	next.First += store.TrimCount(next.Last-next.First+1, s.maxEvents)
	if lg.Last/ageCheckEvery != next.Last/ageCheckEvery {
		young, err := s.firstYoung(ctx, lg, now.Add(-s.maxEventAge))
		if err != nil {
			return nil, nil, err
		}
		next.First = max(next.First, young)
	}
	var ops []clientv3.Op
	if end := min(next.First, lg.Last+1); end > lg.First {
		ops = append(ops, clientv3.OpDelete(s.eventKey(lg.First), clientv3.WithRange(s.eventKey(end))))
	}
	out := make([]store.Event, 0, len(es))
	for i, e := range es {
		e.Seq, e.Time = lg.Last+1+uint64(i), now
		out = append(out, e)
		if e.Seq < next.First {
			continue
		}
		op, err := putJSON(s.eventKey(e.Seq), e)
		if err != nil {
			return nil, nil, err
		}
		ops = append(ops, op)
	}
	op, err := putJSON(s.eventLogKey(), next)
	if err != nil {
		return nil, nil, err
	}
	return append(ops, op), out, nil
}

// firstYoung returns the Seq of the oldest stored event at or after cutoff
// (of the first pageSize: the rest wait for the next check), or the one
// after the last read if all are older. An event that no longer decodes
// goes as if expired, as in the bbolt store.
func (s *Store) firstYoung(ctx context.Context, lg eventLog, cutoff time.Time) (uint64, error) {
	if lg.First > lg.Last {
		return lg.First, nil
	}
	resp, err := s.cli.Get(ctx, s.eventKey(lg.First), clientv3.WithRange(s.eventKey(lg.Last+1)), clientv3.WithLimit(pageSize))
	if err != nil {
		return 0, fmt.Errorf("read oldest events: %w", err)
	}
	young := lg.First
	for _, kv := range resp.Kvs {
		seq, err := s.seqOf(kv.Key)
		if err != nil {
			return 0, err
		}
		var e struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(kv.Value, &e); err == nil && !e.Time.Before(cutoff) {
			return seq, nil
		}
		young = seq + 1
	}
	return young, nil
}

func (s *Store) seqOf(key []byte) (uint64, error) {
	seq, err := strconv.ParseUint(strings.TrimPrefix(string(key), s.dir("events")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("event key %q: %w", key, err)
	}
	return seq, nil
}

// AppendEvent implements store.Store.
func (s *Store) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if err := ctx.Err(); err != nil {
		return store.Event{}, err
	}
	e, err := e.Canonical()
	if err != nil {
		return store.Event{}, fmt.Errorf("etcdstore: %w", err)
	}
	now := s.now()
	var out store.Event
	err = s.retry(ctx, func() error {
		resp, err := s.cli.Get(ctx, s.eventLogKey())
		if err != nil {
			return err
		}
		lg, rev, err := decodeEventLog(resp.Kvs)
		if err != nil {
			return err
		}
		ops, es, err := s.appendOps(ctx, lg, []store.Event{e}, now)
		if err != nil {
			return err
		}
		out = es[0]
		return s.commit(ctx, []clientv3.Cmp{unchanged(s.eventLogKey(), rev)}, append(ops, s.bumpRevision()))
	})
	if err != nil {
		return store.Event{}, fmt.Errorf("etcdstore: append event %s: %w", e.Type, err)
	}
	return out, nil
}

// Events implements store.Store. It reads the Seq range the query allows,
// in pages at one revision, oldest or (Newest) newest first, and filters
// the rest in code.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q, err := q.Canonical()
	if err != nil {
		return nil, fmt.Errorf("etcdstore: %w", err)
	}
	if q.Empty() {
		return nil, nil
	}
	resp, err := s.cli.Get(ctx, s.eventLogKey())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: events: %w", err)
	}
	lg, _, err := decodeEventLog(resp.Kvs)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: events: %w", err)
	}
	from, end := max(q.AfterSeq+1, lg.First), lg.Last+1
	if q.BeforeSeq > 0 {
		end = min(end, q.BeforeSeq)
	}
	var es []store.Event
	if from >= end {
		return es, nil
	}
	_, err = s.scan(ctx, s.eventKey(from), s.eventKey(end), q.Newest, resp.Header.Revision, func(kv *mvccpb.KeyValue) (bool, error) {
		var e store.Event
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return false, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		if !q.Matches(e) {
			return true, nil
		}
		es = append(es, e)
		return q.Limit <= 0 || len(es) < q.Limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: events: %w", err)
	}
	return es, nil
}
