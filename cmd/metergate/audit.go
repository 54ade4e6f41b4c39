package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/metergate/metergate/pkg/audit"
)

// auditCmd runs the audit log's subcommands; verify is the only one.
//
// verify walks the log's hash chain: every line carries the SHA-256 of the
// line before it, so an edited, removed, inserted or reordered line breaks
// the chain at the first line after it, which the error names. A truncated
// log (lines removed at the end) keeps a valid chain: compare the count
// printed with the metergate_gate_decisions_total of the server, or keep a
// copy of the last digest elsewhere.
func auditCmd(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return errors.New("usage: metergate audit verify [-file audit.log]")
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	file := fs.String("file", "audit.log", "the audit log (audit_log of metergate.yml)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	n, err := audit.Verify(*file)
	if err != nil {
		return fmt.Errorf("%s is not intact after %d good records: %w", *file, n, err)
	}
	fmt.Printf("%s: %d records, chain intact\n", *file, n)
	return nil
}
