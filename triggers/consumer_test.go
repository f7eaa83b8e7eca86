package triggers_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/testenv"
	"github.com/salve-sre/salve/triggers"
)

// orderStarter records, per run, the alerts it was handed in the order it
// got them, and takes a little random time like a real Temporal call.
type orderStarter struct {
	mu      sync.Mutex
	running map[string]bool
	starts  map[string]int
	seen    map[string][]string // workflow ID -> alert IDs, in order
}

func (o *orderStarter) pause() { time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) }

func (o *orderStarter) StartOrJoin(_ context.Context, req triggers.StartRequest) (triggers.StartResult, error) {
	o.pause()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen[req.WorkflowID] = append(o.seen[req.WorkflowID], req.Alert.ID)
	if o.running[req.WorkflowID] {
		return triggers.StartResult{RunID: "r"}, nil
	}
	o.running[req.WorkflowID] = true
	o.starts[req.WorkflowID]++
	return triggers.StartResult{RunID: "r", Started: true}, nil
}

func (o *orderStarter) Notify(_ context.Context, id string, evs ...domain.AlertEvent) (bool, error) {
	o.pause()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ev := range evs {
		o.seen[id] = append(o.seen[id], ev.ID)
	}
	return o.running[id], nil
}

// The consumer spreads alerts over lanes: with many incidents at once,
// each incident's alerts still reach its run in the order they were
// stored, each incident gets one run, every alert is decided once, and
// everything is acknowledged. Run with -race (scripts/test.sh does).
func TestConsumerKeepsEachIncidentsOrderAcrossLanes(t *testing.T) {
	_, js := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set := testSet(t, restartRunbook)
	st := &orderStarter{running: map[string]bool{}, starts: map[string]int{}, seen: map[string][]string{}}
	audit := &fakeAudit{}
	log := slog.New(slog.DiscardHandler)
	tr := &triggers.Trigger{Runbooks: triggers.StaticRunbooks{Set: set}, Starter: st, Audit: audit, Log: log}
	c := &triggers.Consumer{JS: js, Trigger: tr, Audit: audit, Log: log, Lanes: 8}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	// 40 incidents × 50 notifications each (firing repeats with distinct
	// starts, so each is a distinct alert), interleaved, in batches.
	const incidents, per = 40, 50
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	want := map[string][]string{}
	var all []domain.AlertEvent
	for k := range per {
		for i := range incidents {
			fp := fmt.Sprintf("fp%02d", i)
			ev := domain.AlertEvent{
				ID: domain.AlertEventID(fp, domain.StatusFiring, t0.Add(time.Duration(k)*time.Second)), Fingerprint: fp,
				Status: domain.StatusFiring, StartsAt: t0.Add(time.Duration(k) * time.Second),
				Labels: map[string]string{"alertname": "Crash", "severity": "warning", "namespace": "shop", "deployment": fmt.Sprintf("d%02d", i)},
			}
			wf := fmt.Sprintf("salve/restart/shop/d%02d", i)
			want[wf] = append(want[wf], ev.ID)
			all = append(all, ev)
		}
	}
	pub := bus.NewPublisher(js)
	for i := 0; i < len(all); i += 100 {
		require.NoError(t, pub.PublishAlerts(ctx, all[i:min(i+100, len(all))]))
	}

	require.Eventually(t, func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		n := 0
		for _, ids := range st.seen {
			n += len(ids)
		}
		return n >= len(all)
	}, time.Minute, 20*time.Millisecond, "not every alert reached the starter")

	st.mu.Lock()
	for wf, ids := range want {
		require.Equal(t, ids, st.seen[wf], "incident %s: alerts out of order", wf)
		require.Equal(t, 1, st.starts[wf], "incident %s: runs", wf)
	}
	st.mu.Unlock()

	// Every alert decided once; nothing left in flight.
	require.Eventually(t, func() bool {
		cons, err := js.Consumer(ctx, bus.StreamAlerts, bus.TriggerDurable)
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, 30*time.Second, 20*time.Millisecond, "messages left unacknowledged")
	decided := map[string]int{}
	audit.mu.Lock()
	for _, e := range audit.events {
		decided[e.Detail["alertId"]]++
	}
	audit.mu.Unlock()
	require.Len(t, decided, len(all))
	for id, n := range decided {
		require.Equal(t, 1, n, "alert %s decided %d times", id, n)
	}
	cancel()
	require.NoError(t, <-done)
}
