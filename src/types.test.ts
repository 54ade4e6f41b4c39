import { USE_CASES, metricOf, withMetric, withUseCase } from './types';

describe('query model', () => {
  it('switching use case takes its first metric, default perimeter and step', () => {
    const q = withUseCase({ refId: 'A', queryType: 'uc2', metric: 'load_curve', perimeter: 'uc2-b2', rmp: '21000000000001' }, 'uc4');
    expect(q).toEqual({ refId: 'A', queryType: 'uc4', metric: 'clusters', perimeter: 'confluence', step: '1d' });
  });

  it('switching to PromQL keeps only the expression', () => {
    expect(withUseCase({ refId: 'A', queryType: 'uc1', perimeter: 'building-b3' }, 'promql')).toEqual({
      refId: 'A',
      queryType: 'promql',
      expr: '',
      instant: false,
      step: undefined,
    });
  });

  it('choosing a curve sets its step; leaving consent drops the meter', () => {
    const q = withMetric({ refId: 'A', queryType: 'uc2', metric: 'daily_sum', perimeter: 'uc2-b2', step: '1d' }, 'load_curve');
    expect(q.step).toBe('10m');
    expect(q.perimeter).toBe('uc2-b2');
    const back = withMetric({ ...q, rmp: '21000000000001' }, 'daily_median');
    expect(back.rmp).toBeUndefined();
    expect(back.step).toBe('1d');
  });

  it('UC5 defaults to the EV stations at 30 minutes', () => {
    expect(withUseCase({ refId: 'A' }, 'uc5')).toMatchObject({ metric: 'charge_curves', perimeter: 'ev-stations', step: '30m' });
  });

  it('every use case but PromQL has metrics; an unknown metric falls back to the first', () => {
    for (const uc of USE_CASES.filter((u) => u.id !== 'promql')) {
      expect(uc.metrics.length).toBeGreaterThan(0);
    }
    expect(metricOf({ refId: 'A', queryType: 'uc4', metric: 'nope' })?.id).toBe('clusters');
  });
});
