package plugin

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/metergate/metergate/backend/apiclient"
)

// routes are the plugin's resources (/api/datasources/uid/<uid>/resources/…
// in Grafana). Each one asks the server with the data source's token, so
// it lists or exports only what the token's audience may read.
func (d *Datasource) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /perimeters", d.servePerimeters)
	mux.HandleFunc("GET /variables/{kind}", d.serveVariable)
	mux.HandleFunc("GET /metrics", serveMetrics)
	mux.HandleFunc("POST /export.csv", d.serveExport)
	mux.HandleFunc("GET /exports/{file}", d.serveUseCaseExport)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	var bad *badQuery
	switch {
	case errors.As(err, &bad):
		code = http.StatusBadRequest
	case errors.Is(err, apiclient.ErrRefused):
		code = http.StatusForbidden
	case errors.Is(err, apiclient.ErrTokenRefused):
		code = http.StatusUnauthorized
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// visiblePerimeters lists the perimeters the token may query, of one use
// case if asked.
func (d *Datasource) visiblePerimeters(r *http.Request) ([]apiclient.Perimeter, error) {
	if err := d.ready(); err != nil {
		return nil, err
	}
	ps, err := d.client.Perimeters(r.Context())
	if err != nil {
		return nil, err
	}
	if uc := r.URL.Query().Get("useCase"); uc != "" {
		ps = slices.DeleteFunc(ps, func(p apiclient.Perimeter) bool { return p.UseCase != uc })
	}
	return ps, nil
}

func (d *Datasource) servePerimeters(w http.ResponseWriter, r *http.Request) {
	ps, err := d.visiblePerimeters(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if ps == nil {
		ps = []apiclient.Perimeter{}
	}
	writeJSON(w, http.StatusOK, ps)
}

// variableValue is one value of a template variable (MetricFindValue).
type variableValue struct {
	Text  string `json:"text"`
	Value string `json:"value"`
}

// serveVariable answers template variables: perimeter, cluster, building.
func (d *Datasource) serveVariable(w http.ResponseWriter, r *http.Request) {
	ps, err := d.visiblePerimeters(r)
	if err != nil {
		writeError(w, err)
		return
	}
	out := []variableValue{}
	seen := map[string]bool{}
	add := func(text, value string) {
		if !seen[value] {
			seen[value] = true
			out = append(out, variableValue{Text: text, Value: value})
		}
	}
	switch kind := r.PathValue("kind"); kind {
	case "perimeter":
		for _, p := range ps {
			add(p.Name, p.Name)
		}
	case "cluster":
		// Cluster ids the token may group by (sum by (cluster)) or that are
		// perimeters of their own; UC4 panels address cluster-$cluster.
		names := map[string]string{}
		for _, p := range ps {
			for _, c := range p.Clusters {
				names[c.ID] = c.ID + " " + c.Name
			}
		}
		for _, p := range ps {
			for _, c := range p.Groups["cluster"] {
				add(cmp.Or(names[c], c), c)
			}
			if len(p.Clusters) == 1 {
				add(names[p.Clusters[0].ID], p.Clusters[0].ID)
			}
		}
	case "building":
		for _, p := range ps {
			if p.Building != nil {
				add(p.Building.Name, p.Name)
			}
		}
	default:
		writeError(w, badf("unknown variable %q (perimeter, cluster or building)", kind))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// metricInfo describes a use case's metric to the query editor.
type metricInfo struct {
	UseCase   string `json:"useCase"`
	ID        string `json:"id"`
	Title     string `json:"title"`
	Unit      string `json:"unit"`
	Step      string `json:"step"`
	Perimeter string `json:"perimeter,omitempty"`
	Consent   bool   `json:"consent"`
}

func serveMetrics(w http.ResponseWriter, r *http.Request) {
	uc := r.URL.Query().Get("useCase")
	out := []metricInfo{}
	for _, m := range metrics {
		if uc == "" || m.UseCase == uc {
			out = append(out, metricInfo{UseCase: m.UseCase, ID: m.ID, Title: m.Title, Unit: m.Unit,
				Step: stepString(m.Step), Perimeter: m.Perimeter, Consent: m.Consent})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func stepString(d time.Duration) string {
	if d%day == 0 {
		return strconv.Itoa(int(d/day)) + "d"
	}
	return strconv.Itoa(int(d/time.Minute)) + "m"
}

// serveUseCaseExport streams the server's own export of a use case
// (GET /api/v1/exports/{uc}.csv with the same parameters: from, to, day,
// nature, step, sep, bom), chunk by chunk.
func (d *Datasource) serveUseCaseExport(w http.ResponseWriter, r *http.Request) {
	if err := d.ready(); err != nil {
		writeError(w, err)
		return
	}
	uc, ok := strings.CutSuffix(r.PathValue("file"), ".csv")
	if !ok || uc == "" {
		writeError(w, badf("exports are named {use case}.csv"))
		return
	}
	params := url.Values{}
	for _, k := range []string{"from", "to", "day", "nature", "step", "sep", "bom"} {
		if v := r.URL.Query().Get(k); v != "" {
			params.Set(k, v)
		}
	}
	body, hdr, err := d.client.Export(r.Context(), uc, params)
	if err != nil {
		writeError(w, err)
		return
	}
	defer body.Close()
	for _, k := range []string{"Content-Type", "Content-Disposition"} {
		w.Header().Set(k, hdr.Get(k))
	}
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 64<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			return // io.EOF or a broken stream: what was sent stands
		}
	}
}

// ExportRequest is the body of POST /export.csv: a panel's queries and
// its time range (milliseconds since the epoch).
type ExportRequest struct {
	From    int64             `json:"from"`
	To      int64             `json:"to"`
	Queries []json.RawMessage `json:"queries"`
}

// exportQuery is the part of a panel query the export reads besides the
// query model itself.
type exportQuery struct {
	RefID     string `json:"refId"`
	QueryType string `json:"queryType"`
}

// serveExport streams the CSV of a panel's queries, evaluated exactly as
// QueryData evaluates them (through the gate, with the token's audience):
// one row per point, hidden points as rows without a value and with the
// privacy notice, refused queries as one row saying so.
func (d *Datasource) serveExport(w http.ResponseWriter, r *http.Request) {
	var req ExportRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, badf("reading the export request: %v", err))
		return
	}
	if len(req.Queries) == 0 || req.To < req.From {
		writeError(w, badf("the export needs queries and a time range with from <= to"))
		return
	}
	tr := backend.TimeRange{From: time.UnixMilli(req.From), To: time.UnixMilli(req.To)}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="metergate-export.csv"`)
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"ref_id", "series", "time", "value", "unit", "notice"})
	flusher, _ := w.(http.Flusher)
	for i, raw := range req.Queries {
		var eq exportQuery
		_ = json.Unmarshal(raw, &eq)
		if eq.RefID == "" {
			eq.RefID = string(rune('A' + i%26))
		}
		resp := d.query(r.Context(), backend.DataQuery{RefID: eq.RefID, QueryType: eq.QueryType, JSON: raw,
			TimeRange: tr, Interval: time.Minute, MaxDataPoints: 11000})
		if resp.Error != nil {
			_ = cw.Write([]string{eq.RefID, "", "", "", "", resp.Error.Error()})
		}
		for _, f := range resp.Frames {
			writeFrameCSV(cw, eq.RefID, f)
		}
		// Each query's rows leave as soon as they are computed.
		cw.Flush()
		if flusher != nil {
			flusher.Flush()
		}
	}
	cw.Flush()
}

// writeFrameCSV writes one row per (time, value field) of a time series
// frame; a null value is a hidden point and says so.
func writeFrameCSV(cw *csv.Writer, refID string, f *data.Frame) {
	var notice string
	if f.Meta != nil {
		for _, n := range f.Meta.Notices {
			if n.Severity != data.NoticeSeverityInfo {
				notice = n.Text
			}
		}
	}
	timeField := -1
	for i, fld := range f.Fields {
		if fld.Type() == data.FieldTypeTime || fld.Type() == data.FieldTypeNullableTime {
			timeField = i
			break
		}
	}
	if timeField < 0 || f.Rows() == 0 {
		if notice != "" {
			_ = cw.Write([]string{refID, f.Name, "", "", "", notice})
		}
		return
	}
	for fi, fld := range f.Fields {
		if fi == timeField || !fld.Type().Numeric() {
			continue
		}
		name := f.Name
		unit := ""
		if c := fld.Config; c != nil {
			if c.DisplayNameFromDS != "" {
				name = c.DisplayNameFromDS
			}
			unit = c.Unit
		}
		for row := 0; row < f.Rows(); row++ {
			t, _ := f.Fields[timeField].ConcreteAt(row)
			ts, _ := t.(time.Time)
			v, ok := fld.ConcreteAt(row)
			value, rowNotice := "", ""
			if fv, isFloat := toFloat(v); ok && isFloat && !math.IsNaN(fv) {
				value = strconv.FormatFloat(fv, 'f', -1, 64)
			} else {
				rowNotice = HiddenNotice
			}
			_ = cw.Write([]string{refID, name, ts.UTC().Format(time.RFC3339), value, unit, rowNotice})
		}
	}
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	}
	return 0, false
}
