package loadgen

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Print writes the human-readable report.
func (r *Report) Print(w io.Writer) {
	mode := ""
	if r.Embedded {
		mode = "  (embedded: NATS JetStream file store + triggers.Ingest in this process)"
	}
	fmt.Fprintf(w, "salve-load ingest %s\n", Version)
	fmt.Fprintf(w, "target              %s%s\n", r.URL, mode)
	incidents := "every alert a new fingerprint"
	if r.Incidents > 0 {
		incidents = fmt.Sprintf("%d incidents (flapping firing/resolved)", r.Incidents)
	}
	fmt.Fprintf(w, "load                %d senders, %d alerts/webhook, dup-ratio %.2f, %s\n", r.Senders, r.PerWebhook, r.DupRatio, incidents)
	fmt.Fprintf(w, "stopped             %s\n", r.StoppedBy)
	fmt.Fprintf(w, "alerts sent         %d (%d distinct states, %d duplicates)\n", r.AlertsSent, r.Distinct, r.Duplicates)
	fmt.Fprintf(w, "alerts accepted     %d (2xx after JetStream ack)\n", r.AlertsAccepted)
	fmt.Fprintf(w, "webhooks            %d sent, %d 2xx\n", r.Webhooks, r.WebhooksOK)
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "failed webhooks     none\n")
	} else {
		keys := make([]string, 0, len(r.Failures))
		for k := range r.Failures {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, r.Failures[k]))
		}
		fmt.Fprintf(w, "failed webhooks     %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "elapsed             %s\n", r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput          %.0f alerts/s, %.0f webhooks/s\n", r.AlertsPerSec(), r.WebhooksPerSec())
	fmt.Fprintf(w, "webhook latency     %s\n", r.Latency)
	if r.Stored != nil {
		verdict := "ok"
		switch {
		case r.Lost():
			verdict = fmt.Sprintf("MISMATCH: %d distinct alert states were accepted", r.Distinct)
		case r.Failed() || r.StoppedBy == "interrupted":
			verdict = "not checked: some webhooks failed"
		}
		fmt.Fprintf(w, "stored              ALERTS %d msgs, expected %d: %s\n", r.Stored.Alerts, r.Distinct, verdict)
	}
	if r.Raw != nil {
		fmt.Fprintf(w, "raw JetStream       %.0f msgs/s: %d senders, js.PublishMsg of %d msgs of %d B, each with Nats-Msg-Id; %d failed\n",
			r.Raw.MsgsPerSec(), r.Raw.Senders, r.Raw.Msgs, r.Raw.Bytes, r.Raw.Failed)
		fmt.Fprintf(w, "raw publish latency %s\n", r.Raw.Latency)
		for _, e := range r.Raw.Errors {
			fmt.Fprintf(w, "raw publish error   %s\n", e)
		}
		if raw := r.Raw.MsgsPerSec(); raw > 0 {
			fmt.Fprintf(w, "ratio ingest/raw    %.3f  (alerts/s ÷ raw msgs/s; each alert is 1 acknowledged publish to ALERTS, whose alert.accepted record the audit recorder derives)\n", r.AlertsPerSec()/raw)
		}
	}
	switch {
	case r.Mem != nil:
		fmt.Fprintf(w, "memory              VmHWM %.1f MiB, VmRSS %.1f MiB (%s)\n", mib(r.Mem.VmHWM), mib(r.Mem.VmRSS), r.Mem.Description)
	case r.MemErr != "":
		fmt.Fprintf(w, "memory              unknown: %s\n", r.MemErr)
	}
	if r.StartMem != nil {
		fmt.Fprintf(w, "memory at start     VmRSS %.1f MiB before NATS started (linked packages and their init)\n", mib(r.StartMem.VmRSS))
	}
	if r.GoSys > 0 {
		fmt.Fprintf(w, "go runtime          heap in use %.1f MiB, obtained from the OS %.1f MiB\n", mib(int64(r.GoHeapInuse)), mib(int64(r.GoSys)))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
