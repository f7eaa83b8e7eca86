package notify_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/activities/notify"
	"github.com/salve-sre/salve/activities/step"
)

// A run schedules hook activities only for the events HookEvents lists,
// so it must list every event some hook of the runbook wants.
func TestHookEventsAreWhatSomeHookWants(t *testing.T) {
	n, err := notify.New(notify.Config{
		Targets: map[string]notify.Target{"chat": {Kind: "webhook", URL: "https://hooks.example.com/x"}},
		Hooks: []notify.Hook{
			{Target: "chat", Events: []string{step.HookFailed}},
			{Target: "chat", Events: []string{step.HookStarted, step.HookFailed}, Runbooks: []string{"restart"}},
		},
	}, nil)
	require.NoError(t, err)
	require.Equal(t, []string{step.HookStarted, step.HookFailed}, n.HookEvents("restart"))
	require.Equal(t, []string{step.HookFailed}, n.HookEvents("scale"))

	all, err := notify.New(notify.Config{
		Targets: map[string]notify.Target{"chat": {Kind: "webhook", URL: "https://hooks.example.com/x"}},
		Hooks:   []notify.Hook{{Target: "chat"}},
	}, nil)
	require.NoError(t, err)
	require.Equal(t, step.HookEvents, all.HookEvents("any"))

	var none *notify.Notifier
	require.Empty(t, none.HookEvents("any"))
}
