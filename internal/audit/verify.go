package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salve-sre/salve/internal/bus"
	"github.com/salve-sre/salve/internal/domain"
)

// Anchor is a copy of the chain head kept outside the store, so that
// cutting rows off the end of the chain — which leaves a valid, shorter
// chain — is detected too.
type Anchor struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// Anchors lists the anchors written so far, oldest first.
type Anchors interface {
	All(ctx context.Context) ([]Anchor, error)
}

// VerifyResult says whether the chain is intact.
type VerifyResult struct {
	OK       bool   `json:"ok"`
	Checked  int64  `json:"checked"`            // rows read
	HeadSeq  int64  `json:"headSeq"`            // last sequence number seen
	HeadHash string `json:"headHash"`           // hash of that row
	BrokenAt int64  `json:"brokenAt,omitempty"` // first bad sequence number
	Problem  string `json:"problem,omitempty"`
	// Anchor is the anchor checked against, if any.
	Anchor *Anchor `json:"anchor,omitempty"`
	// Unrecorded counts the accepted events still in the AUDIT stream,
	// not yet in the store: the chain is verified up to HeadSeq only.
	// Nil when JetStream was not asked.
	Unrecorded *uint64 `json:"unrecorded,omitempty"`
}

// Summary is the one-line verdict people read (salve audit verify).
func (r VerifyResult) Summary() string {
	if !r.OK {
		return fmt.Sprintf("BROKEN at sequence %d: %s (%d rows checked)", r.BrokenAt, r.Problem, r.Checked)
	}
	anchor := "no anchors checked"
	if r.Anchor != nil {
		anchor = fmt.Sprintf("matches the anchor at %d", r.Anchor.Seq)
	}
	s := fmt.Sprintf("OK: verified to sequence %d (%d events, head %s), %s", r.HeadSeq, r.Checked, r.HeadHash, anchor)
	switch {
	case r.Unrecorded == nil:
	case *r.Unrecorded == 0:
		s += "; every accepted event is recorded"
	default:
		s += fmt.Sprintf("; %d accepted events not yet recorded (the recorder is behind)", *r.Unrecorded)
	}
	return s
}

// Unrecorded reads how many accepted events the recorder has not stored
// yet: its consumers' backlogs on AUDIT and on ALERTS (each stored alert
// is recorded as alert.accepted).
func Unrecorded(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	var n uint64
	for _, c := range []bus.Consumer{
		{Name: "recorder", Stream: bus.StreamAudit, Durable: RecorderName},
		{Name: "recorder-alerts", Stream: bus.StreamAlerts, Durable: AlertsRecorderName},
	} {
		b, err := bus.ReadBacklog(ctx, js, c, time.Now())
		if errors.Is(err, bus.ErrNoConsumer) {
			// No recorder ever ran: everything in the stream is unrecorded.
			st, serr := js.Stream(ctx, c.Stream)
			if serr != nil {
				return 0, serr
			}
			info, serr := st.Info(ctx)
			if serr != nil {
				return 0, serr
			}
			n += info.State.Msgs
			continue
		}
		if err != nil {
			return 0, err
		}
		n += b.Pending
	}
	return n, nil
}

// ErrBroken is returned by Verify's callers to map a broken chain to exit 1.
var ErrBroken = errors.New("audit chain is broken")

// Verify recomputes the whole chain and reports the first broken sequence
// number: an edited row (hash or indexed columns no longer match), a
// deleted row (a gap in the sequence), a reordered row (prev_hash does not
// link), or, with anchors, a truncated tail.
func Verify(ctx context.Context, s *Store, anchors Anchors) (VerifyResult, error) {
	res := VerifyResult{OK: true, HeadHash: GenesisHash}
	fail := func(seq int64, format string, args ...any) error {
		res.OK, res.BrokenAt, res.Problem = false, seq, fmt.Sprintf(format, args...)
		return errStop
	}
	err := s.scan(ctx, func(r rawRow) error {
		res.Checked++
		want := res.HeadSeq + 1
		if r.seq != want {
			return fail(want, "sequence %d is missing (next row is %d): rows were deleted", want, r.seq)
		}
		if r.prevHash != res.HeadHash {
			return fail(r.seq, "prev_hash does not match the hash of row %d: rows were reordered, replaced or deleted", res.HeadSeq)
		}
		hash, err := ChainHash(r.prevHash, []byte(r.eventJSON))
		if err != nil || hash != r.hash {
			return fail(r.seq, "hash does not match the row's content: the row was edited")
		}
		var ev domain.AuditEvent
		if err := json.Unmarshal([]byte(r.eventJSON), &ev); err != nil {
			return fail(r.seq, "event is not valid JSON")
		}
		if columnKey(ev.ID) != r.eventID || columnText(ev.Action) != r.action || columnText(ev.Runbook) != r.runbook ||
			columnText(ev.WorkflowID) != r.workflowID || columnText(ev.IncidentKey) != r.incidentKey || ev.Time.UnixNano() != r.timeNS {
			return fail(r.seq, "indexed columns differ from the hashed event: the row was edited")
		}
		res.HeadSeq, res.HeadHash = r.seq, r.hash
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return res, err
	}
	if !res.OK || anchors == nil {
		return res, nil
	}
	list, err := anchors.All(ctx)
	if err != nil {
		return res, fmt.Errorf("read audit anchors: %w", err)
	}
	// Every anchor must still be in the chain with the same hash: a
	// truncated tail leaves an anchor beyond the head, and a truncated tail
	// that was written over leaves an anchor whose row changed.
	for _, a := range list {
		a := a
		res.Anchor = &a
		if a.Seq > res.HeadSeq {
			res.OK, res.BrokenAt = false, res.HeadSeq+1
			res.Problem = fmt.Sprintf("the chain ends at %d but was anchored at %d: the tail was truncated", res.HeadSeq, a.Seq)
			return res, nil
		}
		hash, found, err := s.HashAt(ctx, a.Seq)
		if err != nil {
			return res, err
		}
		if !found || hash != a.Hash {
			res.OK, res.BrokenAt = false, a.Seq
			res.Problem = fmt.Sprintf("row %d does not have the anchored hash: the chain was truncated and rewritten", a.Seq)
			return res, nil
		}
	}
	return res, nil
}

var errStop = errors.New("stop")
