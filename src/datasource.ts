import { DataSourceInstanceSettings, MetricFindValue, ScopedVars, TimeRange } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { DEFAULT_QUERY, MetergateOptions, MetergateQuery } from './types';

/** Perimeter as the backend lists it (only those the token may query). */
export interface Perimeter {
  name: string;
  description?: string;
  useCase: string;
  audience: string;
  flow: string;
  groupBy: string[];
}

/**
 * The data source: every query runs in the backend (and through metergate's
 * privacy gate there), so alerting and exports see the same figures.
 */
export class DataSource extends DataSourceWithBackend<MetergateQuery, MetergateOptions> {
  constructor(settings: DataSourceInstanceSettings<MetergateOptions>) {
    super(settings);
  }

  getDefaultQuery(): Partial<MetergateQuery> {
    return DEFAULT_QUERY;
  }

  filterQuery(q: MetergateQuery): boolean {
    return q.queryType === 'promql' ? !!q.expr : !!q.queryType;
  }

  applyTemplateVariables(q: MetergateQuery, scopedVars: ScopedVars): MetergateQuery {
    const t = getTemplateSrv();
    return {
      ...q,
      perimeter: q.perimeter ? t.replace(q.perimeter, scopedVars) : q.perimeter,
      rmp: q.rmp ? t.replace(q.rmp, scopedVars) : q.rmp,
      expr: q.expr ? t.replace(q.expr, scopedVars) : q.expr,
    };
  }

  /** Perimeters the token may query, of one use case if given. */
  async perimeters(useCase?: string): Promise<Perimeter[]> {
    return this.getResource('perimeters', useCase ? { useCase } : {});
  }

  /**
   * Template variables: `perimeter`, `cluster` or `building`, optionally
   * with a use case, e.g. `perimeter(uc2)`.
   */
  async metricFindQuery(query: string): Promise<MetricFindValue[]> {
    const m = /^\s*(perimeter|cluster|building)\s*(?:\(\s*(uc[1-5])?\s*\))?\s*$/.exec(query ?? '');
    if (!m) {
      throw new Error('variable query must be perimeter, cluster or building, optionally with a use case: perimeter(uc2)');
    }
    const values: Array<{ text: string; value: string }> = await this.getResource(
      `variables/${m[1]}`,
      m[2] ? { useCase: m[2] } : {}
    );
    return values.map((v) => ({ text: v.text, value: v.value }));
  }

  /** CSV of a panel's queries, computed by the backend through the gate. */
  async exportCSV(queries: MetergateQuery[], range: TimeRange): Promise<string> {
    return this.postResource('export.csv', {
      from: range.from.valueOf(),
      to: range.to.valueOf(),
      queries: queries.map((q) => this.applyTemplateVariables(q, {})),
    });
  }
}
