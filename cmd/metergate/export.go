package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// exportCmd fetches a use case's export from a running server. It is an
// HTTP client on purpose: the server holds the token's audience, the gate,
// the audit log and the TSDB's lock, so the command cannot publish anything
// the API would not, and needs no access to the data directory.
func exportCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:9464", "server base URL")
	token := fs.String("token", os.Getenv("METERGATE_TOKEN"), "reader's bearer token (default $METERGATE_TOKEN)")
	uc := fs.String("uc", "", "use case: uc1 … uc5 (required)")
	day := fs.String("day", "", "daily batch of one day, YYYY-MM-DD")
	from := fs.String("from", "", "first day of a range, YYYY-MM-DD")
	to := fs.String("to", "", "last day of a range, YYYY-MM-DD")
	nature := fs.String("nature", "daily", "daily or curve")
	step := fs.String("step", "", "step of curves: 30m or 10m")
	sep := fs.String("sep", ";", "separator: ; or ,")
	bom := fs.Bool("bom", false, "start with a UTF-8 BOM")
	out := fs.String("o", "-", "output file (- is stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *uc == "" {
		fs.Usage()
		return errors.New("-uc is required")
	}
	q := url.Values{"nature": {*nature}, "sep": {*sep}}
	for k, v := range map[string]string{"day": *day, "from": *from, "to": *to, "step": *step} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *bom {
		q.Set("bom", "1")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*base, "/")+"/api/v1/exports/"+url.PathEscape(*uc)+".csv?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req) // asks for gzip and inflates it
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("export: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if *out == "-" {
		if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
			return fmt.Errorf("export: transfer broken, the output is incomplete: %w", err)
		}
		return nil
	}
	// A transfer the server aborted (an error after the first rows) leaves
	// no file, never a silently short one.
	part := *out + ".part"
	f, err := os.Create(part)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(part)
		return fmt.Errorf("export: transfer broken, nothing written: %w", err)
	}
	return os.Rename(part, *out)
}
