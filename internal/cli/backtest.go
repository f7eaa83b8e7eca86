package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/salve-sre/salve/internal/app"
	"github.com/salve-sre/salve/internal/backtest"
	"github.com/salve-sre/salve/internal/domain"
	"github.com/salve-sre/salve/internal/safety"
	"github.com/salve-sre/salve/runbooks"
)

// backtestFlags are salve backtest's flags.
type backtestFlags struct {
	source, prometheus, match, alertmanager string
	since, start, end                       string
	runbooks, against, config               string
	step, runDuration, repeat               time.Duration
}

func newBacktest(stdout, stderr io.Writer) *cobra.Command {
	var f backtestFlags
	r := &remote{}
	cmd := &cobra.Command{
		Use:   "backtest",
		Short: "Replay recorded alerts through runbooks: what would they have done?",
		Long: `Replays recorded alerts through Salve's own trigger and safety envelope on a
simulated clock, with no Temporal and no actions, and reports per runbook the
runs that would have started, the alerts that would have joined a run, the
suppressions by safety check (cooldown, max_runs_per_hour, max_runs_per_day,
max_concurrent, max_concurrent_runs, blast_radius, target_locked, silenced;
maintenance windows make runs dry-run plans), the incidents and targets
touched and the most runs going at once.

Alerts come from Prometheus's ALERTS series (--source prometheus, the
default: no Salve needed) or from Salve's own alert history (--source salve,
GET /v1/alerts, viewer role). Run length is modelled (--run-duration), or a
run ends when its alert resolves under onResolved: cancel or finish; every
run succeeds. --against DIR compares with another version of the runbooks.
See docs/backtest.md.
` + connectionHelp,
		Example: `  salve backtest --prometheus http://prometheus:9090 --runbooks runbooks/
  salve backtest --prometheus http://prometheus:9090 --match 'severity="critical"' --since 14d
  salve backtest --source salve --addr https://salve.example.com --since 3d -o json
  git worktree add /tmp/main main && salve backtest --prometheus http://prometheus:9090 --against /tmp/main/runbooks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBacktest(cmd.Context(), f, r, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.source, "source", "prometheus", "where recorded alerts come from: prometheus (its ALERTS series) or salve (its alert history)")
	fl.StringVar(&f.prometheus, "prometheus", os.Getenv("SALVE_PROMETHEUS"), "Prometheus URL for --source prometheus (default $SALVE_PROMETHEUS)")
	fl.StringVar(&f.match, "match", "", `extra label matchers for ALERTS, e.g. 'severity="critical",team=~"db|web"'`)
	fl.DurationVar(&f.step, "step", backtest.DefaultStep, "query resolution over ALERTS: at most half the rule evaluation interval, so every evaluation is seen")
	fl.StringVar(&f.since, "since", "", "replay from this long ago (7d, 36h) or an RFC 3339 time; default 7d")
	fl.StringVar(&f.start, "start", "", "replay from this RFC 3339 time (instead of --since)")
	fl.StringVar(&f.end, "end", "", "replay until this RFC 3339 time (default now)")
	fl.StringVar(&f.runbooks, "runbooks", firstOf(os.Getenv("SALVE_RUNBOOKS"), "runbooks"), "runbook directory to try (default $SALVE_RUNBOOKS, else ./runbooks)")
	fl.StringVar(&f.against, "against", "", "another runbook directory (e.g. the version deployed) to compare with")
	fl.StringVar(&f.config, "config", "", "Salve's config file, for its safety section (defaults, maxConcurrentRuns, maintenance windows, silences policy)")
	fl.DurationVar(&f.runDuration, "run-duration", backtest.DefaultRunDuration, "modelled length of a run")
	fl.DurationVar(&f.repeat, "repeat-interval", backtest.DefaultRepeatInterval, "Alertmanager's repeat_interval: a firing alert is sent again this often (0 = never)")
	fl.StringVar(&f.alertmanager, "alertmanager", "", "Alertmanager URL: its silences (expired ones included) are checked at each alert's time")
	r.flags(cmd)
	return cmd
}

func runBacktest(ctx context.Context, f backtestFlags, r *remote, stdout, stderr io.Writer) error {
	start, end, err := f.window(time.Now())
	if err != nil {
		return usageError{err}
	}
	if f.runDuration <= 0 || f.step <= 0 || f.repeat < 0 {
		return usageError{errors.New("--run-duration and --step must be positive, --repeat-interval not negative")}
	}
	set, err := loadRunbookDir(f.runbooks)
	if err != nil {
		return err
	}
	var against *runbooks.Set
	if f.against != "" {
		if against, err = loadRunbookDir(f.against); err != nil {
			return fmt.Errorf("--against: %w", err)
		}
	}
	opts := backtest.Options{Runbooks: set, RunDuration: f.runDuration}
	if opts.Safety, err = f.safetyConfig(); err != nil {
		return err
	}
	if f.alertmanager != "" {
		am := safety.Alertmanager{URL: f.alertmanager}
		if strings.TrimSuffix(f.alertmanager, "/") == strings.TrimSuffix(opts.Safety.Alertmanager.URL, "/") {
			// The config's token goes only to the config's Alertmanager.
			am.BearerTokenFile = opts.Safety.Alertmanager.BearerTokenFile
		}
		if opts.Silences, err = am.List(ctx); err != nil {
			return fmt.Errorf("read silences from Alertmanager: %w", err)
		}
	}
	occs, err := f.occurrences(ctx, r, start, end, stderr)
	if err != nil {
		return err
	}
	states := backtest.States(occs, f.repeat, start, end)
	if len(states) > backtest.ProgressEvery {
		opts.Progress = func(done, total int) { fmt.Fprintf(stderr, "replayed %d of %d alert states\n", done, total) }
	}
	res, err := backtest.Run(ctx, states, opts)
	if err != nil {
		return err
	}
	if against == nil {
		if r.output.json() {
			return printJSON(stdout, res)
		}
		return backtest.WriteText(stdout, res)
	}
	opts.Runbooks = against
	before, err := backtest.Run(ctx, states, opts)
	if err != nil {
		return fmt.Errorf("--against: %w", err)
	}
	diff := backtest.Compare(res, before)
	if r.output.json() {
		return printJSON(stdout, map[string]any{"result": res, "against": before, "diff": diff})
	}
	if err := backtest.WriteText(stdout, res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nCompared with %s:\n", f.against)
	return backtest.WriteDiffText(stdout, diff)
}

// window is the replayed time range.
func (f backtestFlags) window(now time.Time) (time.Time, time.Time, error) {
	end := now
	if f.end != "" {
		t, err := time.Parse(time.RFC3339, f.end)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("--end %q: want an RFC 3339 time such as 2026-11-24T09:00:00Z", f.end)
		}
		end = t
	}
	if f.since != "" && f.start != "" {
		return time.Time{}, time.Time{}, errors.New("--since and --start are both set: give one")
	}
	since := firstOf(f.start, f.since, "7d")
	start, err := domain.ParseSince(since, end)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	if !end.After(start) {
		return time.Time{}, time.Time{}, fmt.Errorf("the time range is empty: %s is not before %s", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	return start, end, nil
}

func (f backtestFlags) safetyConfig() (safety.Config, error) {
	if f.config == "" {
		return safety.Config{}, nil
	}
	fc, err := app.LoadFileConfig(f.config)
	if err != nil {
		return safety.Config{}, err
	}
	if err := fc.Safety.Validate(); err != nil {
		return safety.Config{}, fmt.Errorf("%s: %w", f.config, err)
	}
	return fc.Safety, nil
}

// occurrences reads the recorded alerts from the chosen source.
func (f backtestFlags) occurrences(ctx context.Context, r *remote, start, end time.Time, stderr io.Writer) ([]backtest.Occurrence, error) {
	switch f.source {
	case "prometheus":
		if f.prometheus == "" {
			return nil, usageError{errors.New("--source prometheus needs --prometheus URL (or SALVE_PROMETHEUS), e.g. --prometheus http://prometheus:9090")}
		}
		sel, err := backtest.ParseSelector(f.match)
		if err != nil {
			return nil, usageError{err}
		}
		p, err := backtest.NewPrometheus(f.prometheus, sel, f.step)
		if err != nil {
			return nil, usageError{err}
		}
		p.Progress = func(done, total, n int) {
			if total > 1 {
				fmt.Fprintf(stderr, "read %d of %d queries from Prometheus: %d alert occurrences\n", done, total, n)
			}
		}
		return p.Occurrences(ctx, start, end)
	case "salve":
		if f.match != "" {
			return nil, usageError{errors.New("--match applies to --source prometheus only")}
		}
		c, err := r.client()
		if err != nil {
			return nil, err
		}
		return backtest.SalveOccurrences(ctx, c, start, end, func(n int) {
			if n >= backtest.ProgressEvery {
				fmt.Fprintf(stderr, "read %d alert occurrences from Salve\n", n)
			}
		})
	default:
		return nil, usageError{fmt.Errorf("--source %q: want prometheus or salve", f.source)}
	}
}
