package audit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/audit"
	"github.com/salve-sre/salve/internal/testenv"
)

// BenchmarkAppend reports audit events appended per second to the chain, in
// batches as the recorder writes them, for each store.
func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 256} {
		b.Run(fmt.Sprintf("sqlite/batch=%d", batch), func(b *testing.B) {
			s, err := audit.Open(context.Background(), filepath.Join(b.TempDir(), "audit.db"))
			require.NoError(b, err)
			defer s.Close()
			benchAppend(b, s, batch)
		})
		b.Run(fmt.Sprintf("postgres/batch=%d", batch), func(b *testing.B) {
			s, err := audit.Open(context.Background(), testenv.Postgres(b))
			require.NoError(b, err)
			defer s.Close()
			benchAppend(b, s, batch)
		})
	}
}

func benchAppend(b *testing.B, s *audit.Store, batch int) {
	ctx := context.Background()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		evs := events(batch, fmt.Sprintf("b%d", i))
		added, err := s.Append(ctx, evs)
		require.NoError(b, err)
		n += added
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
