package backtest_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/pkg/labels"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/salve-sre/salve/internal/backtest"
)

// A Prometheus answer of any shape turns into occurrences that start
// before they end, never overlap within a series, and into states in time
// order.
func FuzzIntervals(f *testing.F) {
	f.Add([]byte(`[{"metric":{"__name__":"ALERTS","alertname":"A","alertstate":"firing"},"values":[[0,"1"],[30,"1"],[120,"1"]]}]`), int64(30))
	f.Add([]byte(`[{"metric":{"a":"b"},"values":[[60,"1"],[30,"1"],[60,"1"]]},{"metric":{"a":"b"},"values":[[90,"1"]]}]`), int64(60))
	f.Fuzz(func(t *testing.T, body []byte, stepSeconds int64) {
		var m model.Matrix
		if json.Unmarshal(body, &m) != nil || stepSeconds <= 0 || stepSeconds > 86400 {
			return
		}
		step := time.Duration(stepSeconds) * time.Second
		b := backtest.NewIntervals(step)
		b.Add(m)
		end := time.Unix(1e6, 0)
		occs := b.Finish(end)
		last := map[string]time.Time{}
		for _, o := range occs {
			if !o.End.IsZero() {
				require.True(t, o.End.After(o.Start), "occurrence ends after it starts")
			}
			if prev, ok := last[o.Fingerprint]; ok {
				require.False(t, o.Start.Before(prev), "occurrences of one series do not overlap")
			}
			last[o.Fingerprint] = o.End
			require.NotContains(t, o.Labels, "alertstate")
			require.NotContains(t, o.Labels, "__name__")
		}
		states := backtest.States(occs, time.Hour, time.Unix(-1e6, 0), end)
		for i := 1; i < len(states); i++ {
			require.False(t, states[i].ReceivedAt.Before(states[i-1].ReceivedAt))
		}
	})
}

// Whatever --match says, the query holds exactly the matchers it parsed
// to and nothing else: the query is read back with PromQL's grammar for
// a selector (label name, operator, Go-syntax string literal, comma).
func FuzzSelector(f *testing.F) {
	for _, s := range []string{`severity="critical"`, `{team=~"db|web",env!="dev"}`, `a="\"}) or vector(1) #"`, `x!~"."`, `alertstate="pending"`, "A!~\x02"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := backtest.ParseSelector(s)
		if err != nil {
			return
		}
		want, err := labels.ParseMatchers(s)
		require.NoError(t, err)
		q := sel.Query()
		rest, ok := strings.CutPrefix(q, `ALERTS{alertstate="firing"`)
		require.True(t, ok, q)
		for _, m := range want {
			rest, ok = strings.CutPrefix(rest, ","+m.Name+m.Type.String())
			require.True(t, ok, "%s: matcher %s", q, m)
			lit, err := strconv.QuotedPrefix(rest)
			require.NoError(t, err, q)
			v, err := strconv.Unquote(lit)
			require.NoError(t, err, q)
			require.Equal(t, m.Value, v, q)
			rest = rest[len(lit):]
		}
		require.Equal(t, "}", rest, q)
	})
}
