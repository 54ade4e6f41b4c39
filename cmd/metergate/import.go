package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/metergate/metergate/pkg/catalogue"
	"github.com/metergate/metergate/pkg/enedis"
	"github.com/metergate/metergate/remote/importer"
	"github.com/metergate/metergate/remote/sender"
)

// importCmd reads Enedis history files (SGE HDM CSV, Data Connect JSON)
// and sends them to a running server over remote-write, so that they pass
// the catalogue and consent checks live data passes.
func importCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:9464/api/v1/write", "remote-write endpoint of the server")
	token := fs.String("token", os.Getenv("METERGATE_TOKEN"), "sender's bearer token (default $METERGATE_TOKEN)")
	flow := fs.String("flow", "consumption", "flow of Data Connect files, which do not say it: consumption or production")
	check := fs.Bool("check", false, "parse and validate only, send nothing")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: metergate import [flags] FILE|DIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no file or folder given")
	}
	o := enedis.Options{Flow: catalogue.Flow(*flow)}
	if o.Flow != catalogue.Consumption && o.Flow != catalogue.Production {
		return fmt.Errorf("-flow is consumption or production, not %q", *flow)
	}
	files, err := importer.Load(fs.Args(), o)
	if err != nil {
		return err
	}
	for _, f := range files {
		var names []string
		for _, s := range f.Series {
			names = append(names, fmt.Sprintf("%s{rmp=%q} %d samples", s.Metric, s.PRM, len(s.Samples)))
		}
		fmt.Fprintf(os.Stderr, "%s (%s): %s\n", f.Name, f.Format, strings.Join(names, ", "))
		for _, n := range f.Notes {
			fmt.Fprintf(os.Stderr, "  note: %s\n", n)
		}
	}
	if *check {
		return nil
	}
	s, err := sender.New(sender.Config{URL: *url, Token: *token})
	if err != nil {
		return err
	}
	n, sendErr := importer.Send(ctx, s, files)
	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	closeErr := s.Close(closeCtx)
	st := s.Stats()
	fmt.Fprintf(os.Stderr, "import: %d samples sent, %d refused by the server, %d requests, %d retries\n", st.SamplesSent, st.SamplesDropped, st.Requests, st.Retries)
	if err := errors.Join(sendErr, closeErr); err != nil {
		return err
	}
	if st.SamplesDropped > 0 || st.SamplesSent != int64(n) {
		return fmt.Errorf("the server refused %d of %d samples (see its log: consent, catalogue, out-of-order window)", int64(n)-st.SamplesSent, n)
	}
	return nil
}
