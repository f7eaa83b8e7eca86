package workflows

import (
	"fmt"
	"strconv"
	"strings"
)

// A worker says which run revisions it knows in its Temporal identity, so
// starters can pick a revision every polling worker runs: during a rolling
// upgrade a run of a revision an old worker does not know would be run by
// it in an older shape, and could then not be replayed by a new one.

// identityTag is the part of a worker's identity naming the newest
// revision it runs.
const identityTag = "workflow-rev="

// IdentityTag is what a worker of this version adds to its identity.
func IdentityTag() string { return identityTag + strconv.Itoa(CurrentRevision) }

// OldestRevision is the oldest revision still started: the one every
// worker without an identity tag (releases before tags existed) runs.
const OldestRevision = revisionLean

// RevisionOf returns the newest revision a worker with this identity
// runs: its tag, or OldestRevision for a worker without one.
func RevisionOf(identity string) int {
	_, tag, ok := strings.Cut(identity, identityTag)
	if !ok {
		return OldestRevision
	}
	end := strings.IndexFunc(tag, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		tag = tag[:end]
	}
	n, err := strconv.Atoi(tag)
	if err != nil || n < OldestRevision {
		return OldestRevision
	}
	return n
}

// StartRevision is the revision to start new runs with, given the
// identities of the workers polling: the newest all of them run, at most
// CurrentRevision. With no worker polling, OldestRevision: any worker
// that comes runs it.
func StartRevision(identities []string) int {
	if len(identities) == 0 {
		return OldestRevision
	}
	rev := CurrentRevision
	for _, id := range identities {
		rev = min(rev, RevisionOf(id))
	}
	return rev
}

// checkRevision fails a workflow task of a run whose revision this worker
// does not know: Temporal retries the task until a worker that knows it
// takes it, instead of this one running it in an older shape.
func checkRevision(in Input) {
	if in.Revision > CurrentRevision {
		panic(fmt.Sprintf("run revision %d is newer than this worker's %d: a newer worker must run it", in.Revision, CurrentRevision))
	}
}
