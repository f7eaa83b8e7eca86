package safety_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/devnats"
	"github.com/salve-sre/salve/internal/safety"
)

// onMemoryStore makes openGuard build guards on one shared MemoryStore
// instead of a JetStream bucket (TestGuardOnMemoryStore).
var onMemoryStore bool

// The guard's tests again, on the memory store: the guards openGuard
// opens share one store as replicas share a bucket, so the CAS tests
// (concurrent admissions, refusals on stale copies) exercise the memory
// store's compare-and-set exactly as they do JetStream's.
func TestGuardOnMemoryStore(t *testing.T) {
	onMemoryStore = true
	t.Cleanup(func() { onMemoryStore = false })
	for name, test := range map[string]func(*testing.T){
		"Cooldown":                            TestCooldown,
		"RateAndConcurrency":                  TestRateAndConcurrency,
		"CircuitBreaker":                      TestCircuitBreaker,
		"ConcurrentAdmissionsRespectTheLimit": TestConcurrentAdmissionsRespectTheLimit,
		"RefusalIsDecidedOnTheCurrentState":   TestRefusalIsDecidedOnTheCurrentState,
		"TargetLock":                          TestTargetLock,
		"BlastRadius":                         TestBlastRadius,
		"GlobalLimitDefaultsAndDailyRate":     TestGlobalLimitDefaultsAndDailyRate,
		"MaintenanceWindow":                   TestMaintenanceWindow,
		"AlertmanagerSilences":                TestAlertmanagerSilences,
		"ShadowAdmissions":                    TestShadowAdmissionsTakeNothingFromRealRuns,
		"ShadowAndRealRunsKeepApart":          TestShadowAndRealRunsOfOneIncidentKeepApart,
	} {
		t.Run(name, test)
	}
}

// The memory store answers as a real JetStream bucket does, call for
// call: the same script runs against both.
func TestMemoryStoreCompareAndSet(t *testing.T) {
	ns, err := devnats.Start(devnats.Options{StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(ns.Stop)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "CAS", History: 1})
	require.NoError(t, err)

	for name, store := range map[string]safety.Store{"jetstream": kv, "memory": safety.NewMemoryStore()} {
		t.Run(name, func(t *testing.T) { casScript(t, store) })
	}
}

func casScript(t *testing.T, s safety.Store) {
	ctx := context.Background()
	wrongSeq := func(err error) {
		t.Helper()
		var api *jetstream.APIError
		require.ErrorAs(t, err, &api)
		require.Equal(t, jetstream.JSErrCodeStreamWrongLastSequence, api.ErrorCode)
	}

	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)

	r1, err := s.Create(ctx, "k", []byte("one"))
	require.NoError(t, err)
	_, err = s.Create(ctx, "k", []byte("again"))
	require.ErrorIs(t, err, jetstream.ErrKeyExists)

	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "one", string(e.Value()))
	require.Equal(t, r1, e.Revision())
	require.Equal(t, jetstream.KeyValuePut, e.Operation())

	r2, err := s.Update(ctx, "k", []byte("two"), r1)
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = s.Update(ctx, "k", []byte("stale"), r1)
	wrongSeq(err)

	// Revisions are one sequence for the bucket, not per key.
	r3, err := s.Put(ctx, "other", []byte("x"))
	require.NoError(t, err)
	require.Greater(t, r3, r2)

	wrongSeq(s.Delete(ctx, "k", jetstream.LastRevision(r1)))
	require.NoError(t, s.Delete(ctx, "k", jetstream.LastRevision(r2)))
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)

	// A deleted key can be created again.
	_, err = s.Create(ctx, "k", []byte("three"))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "other"))
	_, err = s.Get(ctx, "other")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)

	// Update of a key never written, with revision 0, writes it.
	_, err = s.Update(ctx, "fresh", []byte("v"), 0)
	require.NoError(t, err)
}

func TestMemoryStoreRefusesOptionsItCannotHonour(t *testing.T) {
	s := safety.NewMemoryStore()
	_, err := s.Put(context.Background(), "k", []byte("v"))
	require.NoError(t, err)
	require.Error(t, s.Delete(context.Background(), "k", jetstream.PurgeTTL(1)))
}
