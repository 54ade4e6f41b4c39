import React from 'react';
import { fireEvent, render, screen, waitFor } from '@testing-library/react';

import { QueryEditor } from './QueryEditor';
import { DataSource } from '../datasource';
import { MetergateQuery } from '../types';

function setup(query: MetergateQuery) {
  const perimeters = jest.fn().mockResolvedValue([
    { name: 'building-b3', useCase: 'uc1', audience: 'restricted', flow: 'consumption', groupBy: [] },
  ]);
  const datasource = { perimeters } as unknown as DataSource;
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  render(<QueryEditor query={query} onChange={onChange} onRunQuery={onRunQuery} datasource={datasource} />);
  return { onChange, onRunQuery, perimeters };
}

describe('QueryEditor', () => {
  it('renders the use case, metric, perimeter and step of a use-case query', async () => {
    const { perimeters } = setup({ refId: 'A', queryType: 'uc1', metric: 'monthly_vs_target', perimeter: 'building-b3', step: '1d' });
    expect(screen.getByText('UC1 · New building vs regulatory target')).toBeInTheDocument();
    expect(screen.getByText('Monthly consumption against the target')).toBeInTheDocument();
    expect(screen.getByText('building-b3')).toBeInTheDocument();
    expect(screen.getByLabelText('Step')).toHaveValue('1d');
    expect(screen.queryByLabelText('PromQL')).not.toBeInTheDocument();
    await waitFor(() => expect(perimeters).toHaveBeenCalledWith('uc1'));
  });

  it('asks for the meter only for consented figures', () => {
    setup({ refId: 'A', queryType: 'uc3', metric: 'daily', perimeter: 'uc3-b2' });
    expect(screen.getByLabelText('Meter')).toBeInTheDocument();
  });

  it('changes the step in the query model', () => {
    const { onChange } = setup({ refId: 'A', queryType: 'uc2', metric: 'daily_sum', perimeter: 'building-b2', step: '1d' });
    fireEvent.change(screen.getByLabelText('Step'), { target: { value: '7d' } });
    expect(onChange).toHaveBeenLastCalledWith({
      refId: 'A',
      queryType: 'uc2',
      metric: 'daily_sum',
      perimeter: 'building-b2',
      step: '7d',
    });
  });

  it('edits PromQL for analysts', () => {
    const { onChange, onRunQuery, perimeters } = setup({ refId: 'B', queryType: 'promql', expr: '' });
    const expr = 'sum(linky_consumption_daily_wh{perimeter="confluence"})';
    fireEvent.change(screen.getByLabelText('PromQL'), { target: { value: expr } });
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'B', queryType: 'promql', expr });
    fireEvent.blur(screen.getByLabelText('PromQL'));
    expect(onRunQuery).toHaveBeenCalled();
    expect(perimeters).not.toHaveBeenCalled();
  });
});
