package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/devnats"
	"github.com/salve-sre/salve/internal/tracing"
	"github.com/salve-sre/salve/triggers"
)

// Embedded is a NATS JetStream server with Salve's streams and the real
// triggers.Ingest (store and audit = bus.Publisher) on a loopback HTTP
// server, all in this process: the ingest path of `salve dev` without
// Temporal and the trigger consumer.
type Embedded struct {
	URL   string // base URL of the HTTP server
	Token string
	JS    jetstream.JetStream

	dir string
	ns  *devnats.NATS
	nc  *nats.Conn
	hs  *http.Server
}

// StartEmbedded starts the embedded target on a temporary directory that
// Close removes. log receives the ingest handler's log; nil = discard.
func StartEmbedded(ctx context.Context, log *slog.Logger) (_ *Embedded, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "salve-load-*")
	if err != nil {
		return nil, err
	}
	e := &Embedded{dir: dir}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.ns, err = devnats.Start(devnats.Options{StoreDir: filepath.Join(dir, "nats")}); err != nil {
		return nil, err
	}
	if e.nc, err = nats.Connect(e.ns.URL(), nats.Name("salve-load")); err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	if e.JS, err = jetstream.New(e.nc); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := bus.EnsureStreams(ctx, e.JS, bus.StreamOptions{}); err != nil {
		return nil, err
	}
	pub := bus.NewPublisher(e.JS)
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	e.Token = fmt.Sprintf("%x", tok)
	mux := http.NewServeMux()
	mux.Handle("POST "+DefaultPath, &triggers.Ingest{Store: pub, Audit: pub, Token: e.Token, Log: log.With("component", "ingest")})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.URL = "http://" + ln.Addr().String()
	e.hs = &http.Server{Handler: tracing.Handler(mux, false), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.hs.Serve(ln) }()
	return e, nil
}

// Close stops the HTTP server and NATS and removes the store.
func (e *Embedded) Close() {
	if e.hs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.hs.Shutdown(ctx)
		cancel()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	if e.ns != nil {
		e.ns.Stop()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// StreamCounts returns the message count of ALERTS.
func (e *Embedded) StreamCounts(ctx context.Context) (StreamCounts, error) {
	var sc StreamCounts
	for name, dst := range map[string]*uint64{bus.StreamAlerts: &sc.Alerts} {
		s, err := e.JS.Stream(ctx, name)
		if err != nil {
			return sc, fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return sc, fmt.Errorf("stream %s: %w", name, err)
		}
		*dst = info.State.Msgs
	}
	return sc, nil
}

// RawStream is the stream the raw publish floor writes to: configured like
// ALERTS, on the same server.
const RawStream = "SALVE_LOAD_RAW"

// RawReport is the outcome of RawPublish.
type RawReport struct {
	Senders int
	Msgs    int // acknowledged
	Failed  int
	Bytes   int // payload size of each message
	Elapsed time.Duration
	Latency Latency
	Errors  []string // the first few
}

// MsgsPerSec is the acknowledged publish rate.
func (r *RawReport) MsgsPerSec() float64 { return perSec(r.Msgs, r.Elapsed) }

// RawPublish is the floor ingest is compared with: senders goroutines each
// publish with js.PublishMsg (waiting for the ack, with a distinct
// Nats-Msg-Id) until n messages of data are stored or maxDur passes. It
// writes to RawStream, created with the ALERTS stream's configuration.
func RawPublish(ctx context.Context, js jetstream.JetStream, senders, n int, data []byte, maxDur time.Duration) (*RawReport, error) {
	alerts, err := js.Stream(ctx, bus.StreamAlerts)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", bus.StreamAlerts, err)
	}
	cfg := alerts.CachedInfo().Config
	cfg.Name, cfg.Subjects = RawStream, []string{"salve-load.raw.>"}
	cfg.Description = "salve-load: raw JetStream publish floor, configured like " + bus.StreamAlerts
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", RawStream, err)
	}
	var run [4]byte
	_, _ = rand.Read(run[:])
	prefix := fmt.Sprintf("raw-%x-", run)
	dctx, cancel := context.WithTimeout(ctx, maxDur)
	defer cancel()

	var next, okN, failN atomic.Int64
	lats := make([][]time.Duration, senders)
	var errMu sync.Mutex
	var errs []string
	var wg sync.WaitGroup
	start := time.Now()
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lats[i] = make([]time.Duration, 0, n/senders+16)
			for dctx.Err() == nil {
				k := next.Add(1)
				if k > int64(n) {
					return
				}
				msg := &nats.Msg{Subject: "salve-load.raw.firing", Data: data,
					Header: nats.Header{jetstream.MsgIDHeader: []string{prefix + strconv.FormatInt(k, 10)}}}
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := js.PublishMsg(pctx, msg)
				lat := time.Since(t0)
				pcancel()
				if err != nil {
					failN.Add(1)
					errMu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err.Error())
					}
					errMu.Unlock()
					continue
				}
				okN.Add(1)
				lats[i] = append(lats[i], lat)
			}
		}()
	}
	wg.Wait()
	r := &RawReport{Senders: senders, Msgs: int(okN.Load()), Failed: int(failN.Load()), Bytes: len(data), Elapsed: time.Since(start), Errors: errs}
	r.Latency = summarize(slices.Concat(lats...))
	return r, nil
}

// sampleAlertMessage is an ALERTS message as ingest publishes it for the
// generator's alerts: the payload size the raw floor uses.
func sampleAlertMessage(c Config) ([]byte, error) {
	g := newGenerator(c)
	body, err := g.webhook([]alertState{g.next()})
	if err != nil {
		return nil, err
	}
	_, evs, err := triggers.DecodeWebhook(body, time.Now())
	if err != nil {
		return nil, err
	}
	return json.Marshal(evs[0])
}

// RunEmbedded starts the embedded target, runs c against it (c.URL,
// c.Token and c.PID are ignored), counts what the streams stored, measures
// the raw publish floor with the same concurrency and as many messages as
// alerts were sent, and reports this process's memory.
func RunEmbedded(ctx context.Context, c Config, log *slog.Logger) (*Report, error) {
	startMem, startMemErr := ReadProcMem(0)
	if c.Tracing {
		s, err := tracing.FromEnv(nil)
		if err != nil {
			return nil, err
		}
		shutdown, err := tracing.Start(ctx, s, tracing.Process{Version: Version, Role: "salve-load ingest"})
		if err != nil {
			return nil, err
		}
		defer func() { _ = shutdown(context.WithoutCancel(ctx)) }()
	}
	e, err := StartEmbedded(ctx, log)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	c.URL, c.Token, c.PID = e.URL, e.Token, 0
	rep, err := Run(ctx, c)
	if err != nil {
		return nil, err
	}
	rep.Embedded = true
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	sc, err := e.StreamCounts(sctx)
	if err != nil {
		return nil, err
	}
	rep.Stored = &sc
	if ctx.Err() == nil {
		c.defaults()
		data, err := sampleAlertMessage(c)
		if err != nil {
			return nil, err
		}
		if rep.Raw, err = RawPublish(ctx, e.JS, c.Senders, max(rep.AlertsSent, 1), data, c.Duration); err != nil {
			return nil, err
		}
	}
	if m, err := ReadProcMem(0); err != nil {
		rep.MemErr = err.Error()
	} else {
		m.Description = "this process: NATS server + ingest + load generator"
		rep.Mem = &m
	}
	if startMemErr == nil {
		rep.StartMem = &startMem
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.GoHeapInuse, rep.GoSys = ms.HeapInuse, ms.Sys
	return rep, nil
}
