package loadgen

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/triggers"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value, p50", ms(7), 50, 7 * time.Millisecond},
		{"one value, p99", ms(7), 99, 7 * time.Millisecond},
		{"two values, p50 is the lower", ms(1, 2), 50, 1 * time.Millisecond},
		{"two values, p51 is the upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"four values, p50", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"four values, p75", ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{"1..100, p50", ms(hundred...), 50, 50 * time.Millisecond},
		{"1..100, p90", ms(hundred...), 90, 90 * time.Millisecond},
		{"1..100, p99", ms(hundred...), 99, 99 * time.Millisecond},
		{"1..100, p99.9 rounds up to the max", ms(hundred...), 99.9, 100 * time.Millisecond},
		{"p100 is the max", ms(1, 5, 9), 100, 9 * time.Millisecond},
		{"p0 is the min", ms(1, 5, 9), 0, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Percentile(tt.sorted, tt.p))
		})
	}
}

func TestWebhookURL(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080/v1/alertmanager"},
		{in: "http://127.0.0.2:8080/", want: "http://127.0.0.2:8080/v1/alertmanager"},
		{in: "http://localhost:8080/hook", want: "http://localhost:8080/hook"},
		{in: "http://[::1]:8080", want: "http://[::1]:8080/v1/alertmanager"},
		{in: "http://10.0.0.1:8080", err: "loopback"},
		{in: "http://example.com", err: "loopback"},
		{in: "ftp://127.0.0.1", err: "http://"},
	}
	for _, tt := range tests {
		got, err := WebhookURL(tt.in)
		if tt.err != "" {
			require.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got)
	}
}

// The storm generator: duplicates repeat exact states, flaps make new
// states of the same fingerprints, and every body is a valid webhook.
func TestGenerator(t *testing.T) {
	g := newGenerator(Config{Incidents: 10, DupRatio: 0.3, Alertname: "SalveLoad", Seed: 42})
	ids := map[string]bool{}
	fps := map[string]bool{}
	statuses := map[string]int{}
	for range 100 {
		batch := []alertState{g.next(), g.next(), g.next()}
		body, err := g.webhook(batch)
		require.NoError(t, err)
		_, evs, err := triggers.DecodeWebhook(body, time.Now())
		require.NoError(t, err)
		require.Len(t, evs, 3)
		for _, ev := range evs {
			ids[ev.ID] = true
			fps[ev.Fingerprint] = true
			statuses[ev.Status]++
		}
	}
	require.Equal(t, 300, g.distinct+g.dups)
	require.Len(t, ids, g.distinct, "every non-duplicate is a new alert state")
	require.Len(t, fps, 10, "a fixed number of incidents")
	require.InDelta(t, 90, g.dups, 30, "about 30%% duplicates")
	require.Positive(t, statuses["resolved"], "incidents flap")

	u := newGenerator(Config{Alertname: "SalveLoad"})
	for range 50 {
		u.next()
	}
	require.Equal(t, 50, u.distinct)
	require.Zero(t, u.dups)
}

func TestReadProcMem(t *testing.T) {
	m, err := ReadProcMem(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, m.VmRSS)
	require.GreaterOrEqual(t, m.VmHWM, m.VmRSS)
	_, err = ReadProcMem(-1)
	require.Error(t, err)
	_, err = ReadProcMem(1 << 30) // above any pid_max
	require.Error(t, err)
}

// A real small run: embedded NATS JetStream, the real ingest handler, real
// HTTP. Figures are printed, never asserted.
func TestRunEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunEmbedded(ctx, Config{Senders: 4, Alerts: 500, Duration: time.Minute}, nil)
	require.NoError(t, err)
	var out bytes.Buffer
	rep.Print(&out)
	t.Log("\n" + out.String())

	require.Equal(t, "all alerts sent", rep.StoppedBy)
	require.Empty(t, rep.Failures)
	require.Equal(t, 500, rep.AlertsSent)
	require.Equal(t, 500, rep.AlertsAccepted)
	require.Equal(t, 500, rep.WebhooksOK)
	require.Equal(t, 500, rep.Latency.N)
	require.NotNil(t, rep.Stored)
	require.EqualValues(t, 500, rep.Stored.Alerts)
	require.False(t, rep.Lost())
	require.NotNil(t, rep.Raw)
	require.Equal(t, 500, rep.Raw.Msgs)
	require.Zero(t, rep.Raw.Failed)
	require.NotNil(t, rep.Mem)
}

// The storm shape through the real stack: duplicates collapse in the
// stream, each distinct state is stored once.
func TestRunEmbeddedStorm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunEmbedded(ctx, Config{Senders: 4, Alerts: 400, PerWebhook: 5, DupRatio: 0.25, Incidents: 10, Duration: time.Minute}, nil)
	require.NoError(t, err)
	require.Empty(t, rep.Failures)
	require.Equal(t, 400, rep.AlertsAccepted)
	require.Equal(t, 80, rep.WebhooksOK)
	require.Positive(t, rep.Duplicates)
	require.Equal(t, 400, rep.Distinct+rep.Duplicates)
	require.EqualValues(t, rep.Distinct, rep.Stored.Alerts, "duplicates collapse; nothing lost")
}

func TestCLI(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), args, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, out, _ := run("--version")
	require.Equal(t, 0, code)
	require.Contains(t, out, "salve-load ")

	code, out, _ = run("ingest", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "--per-webhook")

	code, out, _ = run("--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "ingest")

	code, _, errOut := run("ingest", "extra")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "Run 'salve-load --help'")

	code, _, errOut = run("ingest", "--url", "http://192.0.2.1:8080", "--token", "x")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "loopback")

	code, _, errOut = run("ingest", "--url", "http://127.0.0.1:1", "--token", "x", "--senders", "0")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--senders")

	code, _, _ = run("nope")
	require.Equal(t, 2, code)

	// Nothing listens on this port: every webhook fails, exit status 1.
	code, out, _ = run("ingest", "--url", "http://127.0.0.1:1", "--token", "x", "--alerts", "3", "--senders", "1", "--quiet")
	require.Equal(t, 1, code)
	require.Contains(t, out, "transport: 3")

	code, out, errOut = run("ingest", "--embedded", "--alerts", "200", "--senders", "2", "--per-webhook", "10")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{"alerts accepted     200", "failed webhooks     none", "ratio ingest/raw", "VmHWM"} {
		require.True(t, strings.Contains(out, want), "report lacks %q:\n%s", want, out)
	}
}
