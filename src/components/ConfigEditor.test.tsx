import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';

import { ConfigEditor } from './ConfigEditor';

const options = {
  id: 1,
  uid: 'mg',
  orgId: 1,
  name: 'metergate',
  type: 'metergate-metergate-datasource',
  typeName: 'metergate',
  typeLogoUrl: '',
  access: 'proxy',
  url: 'http://localhost:9464',
  user: '',
  database: '',
  basicAuth: false,
  basicAuthUser: '',
  isDefault: false,
  jsonData: {},
  secureJsonFields: {},
  readOnly: false,
  withCredentials: false,
} as any;

describe('ConfigEditor', () => {
  it('keeps the token in secureJsonData', () => {
    const onOptionsChange = jest.fn();
    render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
    expect(screen.getByLabelText('URL')).toHaveValue('http://localhost:9464');
    fireEvent.change(screen.getByLabelText('Token'), { target: { value: 'public-token-0123456789' } });
    const saved = onOptionsChange.mock.calls[0][0];
    expect(saved.secureJsonData).toEqual({ token: 'public-token-0123456789' });
    expect(saved.jsonData).toEqual({});
  });
});
