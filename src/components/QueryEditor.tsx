import React, { ChangeEvent, useEffect, useMemo, useState } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { InlineField, InlineFieldRow, InlineSwitch, Input, Select, TextArea } from '@grafana/ui';

import { DataSource, Perimeter } from '../datasource';
import {
  MetergateOptions,
  MetergateQuery,
  QueryType,
  USE_CASES,
  metricOf,
  useCaseOf,
  withMetric,
  withUseCase,
} from '../types';

type Props = QueryEditorProps<DataSource, MetergateQuery, MetergateOptions>;

const useCaseOptions: Array<SelectableValue<QueryType>> = USE_CASES.map((u) => ({ label: u.title, value: u.id }));

/** Use case, metric, perimeter and step; or PromQL for analysts. */
export function QueryEditor({ query, onChange, onRunQuery, datasource }: Props) {
  const [perimeters, setPerimeters] = useState<Perimeter[]>([]);
  const useCase = query.queryType ?? 'uc4';
  const metric = metricOf(query);

  useEffect(() => {
    if (useCase === 'promql') {
      return;
    }
    let live = true;
    // Only the perimeters the token may query are offered.
    datasource
      .perimeters(useCase)
      .then((ps) => live && setPerimeters(ps))
      .catch(() => live && setPerimeters([]));
    return () => {
      live = false;
    };
  }, [datasource, useCase]);

  const metricOptions = useMemo(
    () => (useCaseOf(useCase)?.metrics ?? []).map((m) => ({ label: m.title, value: m.id, description: m.consent ? 'needs consent' : undefined })),
    [useCase]
  );
  const perimeterOptions = useMemo(() => {
    const opts: Array<SelectableValue<string>> = perimeters.map((p) => ({ label: p.name, value: p.name, description: p.description }));
    if (query.perimeter && !opts.some((o) => o.value === query.perimeter)) {
      opts.push({ label: query.perimeter, value: query.perimeter });
    }
    return opts;
  }, [perimeters, query.perimeter]);

  const change = (q: MetergateQuery, run = true) => {
    onChange(q);
    if (run) {
      onRunQuery();
    }
  };

  return (
    <>
      <InlineFieldRow>
        <InlineField label="Use case" labelWidth={14}>
          <Select
            inputId="metergate-use-case"
            aria-label="Use case"
            width={44}
            options={useCaseOptions}
            value={useCase}
            onChange={(v) => v.value && change(withUseCase(query, v.value))}
          />
        </InlineField>
        {useCase !== 'promql' && (
          <InlineField label="Metric" labelWidth={10}>
            <Select
              inputId="metergate-metric"
              aria-label="Metric"
              width={44}
              options={metricOptions}
              value={metric?.id}
              onChange={(v) => v.value && change(withMetric({ ...query, queryType: useCase }, v.value))}
            />
          </InlineField>
        )}
      </InlineFieldRow>
      {useCase !== 'promql' && (
        <InlineFieldRow>
          <InlineField label="Perimeter" labelWidth={14} tooltip="Only perimeters this data source's token may query">
            <Select
              inputId="metergate-perimeter"
              aria-label="Perimeter"
              width={44}
              allowCustomValue
              options={perimeterOptions}
              value={query.perimeter || metric?.perimeter || null}
              onChange={(v) => change({ ...query, queryType: useCase, perimeter: v?.value ?? '' })}
            />
          </InlineField>
          <InlineField label="Step" labelWidth={10} tooltip="1d or 7d for daily figures; 10m or 30m for curves">
            <Input
              id="metergate-step"
              aria-label="Step"
              width={10}
              value={query.step ?? ''}
              placeholder={metric?.step}
              onChange={(e: ChangeEvent<HTMLInputElement>) => change({ ...query, queryType: useCase, step: e.target.value }, false)}
              onBlur={onRunQuery}
            />
          </InlineField>
          {metric?.consent && (
            <InlineField label="Meter (PRM)" labelWidth={14} tooltip="One consenting meter; empty: all of them">
              <Input
                id="metergate-rmp"
                aria-label="Meter"
                width={20}
                value={query.rmp ?? ''}
                onChange={(e: ChangeEvent<HTMLInputElement>) => change({ ...query, rmp: e.target.value }, false)}
                onBlur={onRunQuery}
              />
            </InlineField>
          )}
        </InlineFieldRow>
      )}
      {useCase === 'promql' && (
        <>
          <InlineField label="PromQL" labelWidth={14} grow tooltip="Evaluated by metergate's privacy gate with this data source's token">
            <TextArea
              id="metergate-expr"
              aria-label="PromQL"
              rows={3}
              value={query.expr ?? ''}
              placeholder='sum(linky_consumption_daily_wh{perimeter="confluence"})'
              onChange={(e: ChangeEvent<HTMLTextAreaElement>) => change({ ...query, queryType: 'promql', expr: e.target.value }, false)}
              onBlur={onRunQuery}
            />
          </InlineField>
          <InlineFieldRow>
            <InlineField label="Step" labelWidth={14}>
              <Input
                id="metergate-promql-step"
                aria-label="PromQL step"
                width={10}
                value={query.step ?? ''}
                placeholder="auto"
                onChange={(e: ChangeEvent<HTMLInputElement>) => change({ ...query, step: e.target.value }, false)}
                onBlur={onRunQuery}
              />
            </InlineField>
            <InlineField label="Instant" labelWidth={10}>
              <InlineSwitch
                id="metergate-instant"
                aria-label="Instant"
                value={!!query.instant}
                onChange={(e: React.FormEvent<HTMLInputElement>) => change({ ...query, instant: e.currentTarget.checked })}
              />
            </InlineField>
          </InlineFieldRow>
        </>
      )}
    </>
  );
}
