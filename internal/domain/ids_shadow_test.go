package domain_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/domain"
)

func TestIsShadowWorkflowID(t *testing.T) {
	require.True(t, domain.IsShadowWorkflowID(domain.ShadowWorkflowID("restart", "shop/api")))
	require.False(t, domain.IsShadowWorkflowID(domain.WorkflowID("restart", "shop/api")))
	require.False(t, domain.IsShadowWorkflowID(domain.WorkflowID("restart", "~shadow/x")), "a real key never starts with ~")
	require.False(t, domain.IsShadowWorkflowID("other/restart/~shadow/x"))
}
