package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/provisiond/provisiond/internal/store"
)

// What etcd answers while it elects a leader or lost a member is marked
// store.ErrUnavailable (503); everything else passes unchanged.
func TestMarkUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrLeaderChanged, true},
		{rpctypes.ErrNoLeader, true},
		{rpctypes.ErrTimeout, true},
		{rpctypes.ErrTimeoutDueToLeaderFail, true},
		{rpctypes.ErrGRPCLeaderChanged, true},
		{status.Error(codes.Unavailable, "error reading from server: connection reset by peer"), true},
		{fmt.Errorf("provisioning: %w", rpctypes.ErrLeaderChanged), true},
		{rpctypes.ErrPermissionDenied, false},
		{rpctypes.ErrGRPCCompacted, false},
		{context.DeadlineExceeded, false},
		{errConflict, false},
	} {
		got := markUnavailable(tc.err)
		if errors.Is(got, store.ErrUnavailable) != tc.want || !errors.Is(got, tc.err) {
			t.Errorf("markUnavailable(%v) = %v; want unavailable %v, wrapping the error", tc.err, got, tc.want)
		}
	}
	if markUnavailable(nil) != nil {
		t.Error("markUnavailable(nil) is not nil")
	}
}
