package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EnsureTimeout bounds how long EnsureAsset keeps retrying.
const EnsureTimeout = 2 * time.Minute

// EnsureAsset runs create — a CreateOrUpdate of a stream or key-value
// bucket — until it succeeds, retrying the answers a JetStream cluster
// gives while it is busy or forming: no answer in time, no responders,
// "temporarily unavailable", no peers to place replicas on yet. Every
// Salve process ensures its streams and buckets at start, and on a fresh
// cluster several pods starting together create the same stream at once;
// a clustered server can leave such concurrent creates unanswered, and
// each process would otherwise exit. Other errors (a config the server
// refuses) return at once.
func EnsureAsset(ctx context.Context, what string, create func(context.Context) error) error {
	attempts := 0
	op := func() (struct{}, error) {
		attempts++
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := create(actx)
		switch {
		case err == nil:
			return struct{}{}, nil
		case ctx.Err() != nil:
			return struct{}{}, backoff.Permanent(err)
		case busy(err):
			return struct{}{}, err
		default:
			return struct{}{}, backoff.Permanent(err)
		}
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 200*time.Millisecond, 5*time.Second
	_, err := backoff.Retry(ctx, op, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(EnsureTimeout))
	if err != nil && attempts > 1 {
		return fmt.Errorf("%s (after %d attempts): %w", what, attempts, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// busy reports an answer worth retrying.
func busy(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 10008: JetStream system temporarily unavailable; 10074: no
		// suitable peers for placement (a node is still starting).
		// 10039 (JetStream not enabled for the account) is a 503 too, but
		// a configuration no retry fixes.
		if apiErr.ErrorCode == 10039 {
			return false
		}
		return apiErr.Code == 503 || apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10074
	}
	return false
}

// EnsureStream creates or updates a stream, retrying as EnsureAsset does.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	return EnsureAsset(ctx, "ensure stream "+cfg.Name, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, cfg)
		return err
	})
}

// EnsureKeyValue creates or updates a key-value bucket, retrying as
// EnsureAsset does.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := EnsureAsset(ctx, "ensure bucket "+cfg.Bucket, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	return kv, err
}

// EnsureConsumer creates or updates a durable consumer, retrying as
// EnsureAsset does.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	var c jetstream.Consumer
	err := EnsureAsset(ctx, "ensure consumer "+stream+"/"+cfg.Durable, func(ctx context.Context) error {
		var err error
		c, err = js.CreateOrUpdateConsumer(ctx, stream, cfg)
		return err
	})
	return c, err
}
