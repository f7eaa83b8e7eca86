package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/salve-sre/salve/internal/audit"
)

// Alerts lists the alert occurrences Salve received that started at or
// after since, oldest first, at most limit (1..10,000) (GET /v1/alerts).
func (c *Client) Alerts(ctx context.Context, since time.Time, limit int) ([]audit.AlertState, error) {
	q := url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}, "limit": {strconv.Itoa(limit)}}
	var res struct {
		Alerts []audit.AlertState `json:"alerts"`
	}
	err := c.do(ctx, http.MethodGet, c.url(q, "v1", "alerts"), nil, &res)
	return res.Alerts, err
}
