import { DataQuery, DataSourceJsonData } from '@grafana/schema';

/** Query types: the five use cases of the seed report, and PromQL. */
export type QueryType = 'uc1' | 'uc2' | 'uc3' | 'uc4' | 'uc5' | 'promql';

/** A panel query, as the backend reads it (backend/plugin/query.go). */
export interface MetergateQuery extends DataQuery {
  queryType?: QueryType;
  perimeter?: string;
  metric?: string;
  /** Prometheus duration: 1d/7d for daily figures, 10m/30m for curves. */
  step?: string;
  /** One consenting meter of a consented perimeter. */
  rmp?: string;
  /** PromQL query type. */
  expr?: string;
  instant?: boolean;
}

export interface MetergateOptions extends DataSourceJsonData {
  timeoutSeconds?: number;
}

/** Kept encrypted by Grafana; only the backend sees it. */
export interface MetergateSecureJsonData {
  token?: string;
}

export interface MetricOption {
  id: string;
  title: string;
  step: string;
  /** Perimeter the metric addresses unless another is chosen. */
  perimeter?: string;
  /** Only the consented audience may read it (individual values, curves). */
  consent?: boolean;
}

export interface UseCaseOption {
  id: QueryType;
  title: string;
  metrics: MetricOption[];
}

/** The use cases and their figures (the backend's table in usecases.go). */
export const USE_CASES: UseCaseOption[] = [
  {
    id: 'uc1',
    title: 'UC1 · New building vs regulatory target',
    metrics: [
      { id: 'monthly_vs_target', title: 'Monthly consumption against the target', step: '1d' },
      { id: 'daily_sum', title: 'Daily consumption of the building', step: '1d' },
    ],
  },
  {
    id: 'uc2',
    title: 'UC2 · Renovated buildings',
    metrics: [
      { id: 'daily_sum', title: 'Daily consumption (sum)', step: '1d' },
      { id: 'daily_median', title: 'Daily consumption, median household', step: '1d' },
      { id: 'daily_q1', title: 'Daily consumption, first quartile', step: '1d' },
      { id: 'daily_q3', title: 'Daily consumption, third quartile', step: '1d' },
      { id: 'load_curve', title: '10-minute load curves (consent)', step: '10m', consent: true },
    ],
  },
  {
    id: 'uc3',
    title: 'UC3 · Consenting households',
    metrics: [
      { id: 'daily', title: 'Daily consumption of each household', step: '1d', consent: true },
      { id: 'daily_sum', title: 'Daily consumption (sum)', step: '1d', consent: true },
      { id: 'daily_median', title: 'Daily consumption (median)', step: '1d', consent: true },
    ],
  },
  {
    id: 'uc4',
    title: 'UC4 · Neighbourhood (public)',
    metrics: [
      { id: 'clusters', title: 'Daily consumption of each cluster', step: '1d', perimeter: 'confluence' },
      { id: 'consumption', title: 'Daily consumption', step: '1d', perimeter: 'confluence' },
      { id: 'injected', title: 'Production injected', step: '1d', perimeter: 'producers' },
      { id: 'self_consumed', title: 'Production self-consumed', step: '1d', perimeter: 'producers' },
      { id: 'per_inhabitant', title: 'Consumption per inhabitant', step: '1d', perimeter: 'confluence' },
      { id: 'clusters_per_inhabitant', title: 'Per inhabitant, each cluster', step: '1d', perimeter: 'confluence' },
    ],
  },
  {
    id: 'uc5',
    title: 'UC5 · EV stations',
    metrics: [{ id: 'charge_curves', title: '30-minute charge curves (consent)', step: '30m', perimeter: 'ev-stations', consent: true }],
  },
  { id: 'promql', title: 'PromQL (analysts)', metrics: [] },
];

export function useCaseOf(id?: QueryType): UseCaseOption | undefined {
  return USE_CASES.find((u) => u.id === id);
}

export function metricOf(q: MetergateQuery): MetricOption | undefined {
  const uc = useCaseOf(q.queryType);
  return uc?.metrics.find((m) => m.id === q.metric) ?? uc?.metrics[0];
}

/**
 * The query after the use case changes: its first metric, that metric's
 * default perimeter and step; what belonged to the previous use case goes.
 */
export function withUseCase(q: MetergateQuery, id: QueryType): MetergateQuery {
  const uc = useCaseOf(id);
  if (!uc || id === 'promql') {
    return { refId: q.refId, queryType: 'promql', expr: q.expr ?? '', instant: q.instant ?? false, step: undefined };
  }
  const m = uc.metrics[0];
  return { refId: q.refId, queryType: id, metric: m.id, perimeter: m.perimeter ?? '', step: m.step };
}

/** The query after the metric changes: its step, and its perimeter if it has one. */
export function withMetric(q: MetergateQuery, metric: string): MetergateQuery {
  const m = useCaseOf(q.queryType)?.metrics.find((x) => x.id === metric);
  if (!m) {
    return q;
  }
  return { ...q, metric: m.id, step: m.step, perimeter: m.perimeter ?? q.perimeter, rmp: m.consent ? q.rmp : undefined };
}

export const DEFAULT_QUERY: Partial<MetergateQuery> = {
  queryType: 'uc4',
  metric: 'clusters',
  perimeter: 'confluence',
  step: '1d',
};
