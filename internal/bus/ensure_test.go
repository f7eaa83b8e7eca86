package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func TestEnsureAssetRetriesWhatABusyClusterAnswers(t *testing.T) {
	for _, busyErr := range []error{
		context.DeadlineExceeded,
		nats.ErrTimeout,
		nats.ErrNoResponders,
		&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"},
		&jetstream.APIError{Code: 500, ErrorCode: 10074, Description: "no suitable peers for placement"},
	} {
		calls := 0
		err := EnsureAsset(context.Background(), "ensure stream X", func(ctx context.Context) error {
			calls++
			_, ok := ctx.Deadline()
			require.True(t, ok, "each attempt has its own deadline")
			if calls < 3 {
				return busyErr
			}
			return nil
		})
		require.NoError(t, err, "%v", busyErr)
		require.Equal(t, 3, calls, "%v", busyErr)
	}
}

func TestEnsureAssetStopsAtARefusal(t *testing.T) {
	refusal := &jetstream.APIError{Code: 400, ErrorCode: 10052, Description: "replicas > 1 not supported in non-clustered mode"}
	calls := 0
	err := EnsureAsset(context.Background(), "ensure stream X", func(context.Context) error {
		calls++
		return refusal
	})
	require.Equal(t, 1, calls)
	require.ErrorIs(t, err, refusal)
	require.ErrorContains(t, err, "ensure stream X: ")
}

func TestEnsureAssetStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := EnsureAsset(ctx, "ensure bucket B", func(context.Context) error { return nats.ErrTimeout })
	require.Error(t, err)
	require.True(t, errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded), "%v", err)
	require.Contains(t, err.Error(), "ensure bucket B")
}
