import React, { ChangeEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { InlineField, Input, SecretInput } from '@grafana/ui';

import { MetergateOptions, MetergateSecureJsonData } from '../types';

type Props = DataSourcePluginOptionsEditorProps<MetergateOptions, MetergateSecureJsonData>;

/**
 * The server's URL and the token the plugin reads with. The token's audience
 * (public, restricted, consented, operator) decides what every panel may
 * show; Save & test says which one it is.
 */
export function ConfigEditor({ options, onOptionsChange }: Props) {
  const onURL = (e: ChangeEvent<HTMLInputElement>) => onOptionsChange({ ...options, url: e.target.value });
  const onTimeout = (e: ChangeEvent<HTMLInputElement>) =>
    onOptionsChange({ ...options, jsonData: { ...options.jsonData, timeoutSeconds: Number(e.target.value) || undefined } });
  const onToken = (e: ChangeEvent<HTMLInputElement>) =>
    onOptionsChange({ ...options, secureJsonData: { ...options.secureJsonData, token: e.target.value } });
  const onResetToken = () =>
    onOptionsChange({
      ...options,
      secureJsonFields: { ...options.secureJsonFields, token: false },
      secureJsonData: { ...options.secureJsonData, token: '' },
    });
  const secure = (options.secureJsonData ?? {}) as MetergateSecureJsonData;
  return (
    <>
      <InlineField label="URL" labelWidth={16} tooltip="metergate serve, e.g. http://metergate:9464" required>
        <Input
          id="metergate-url"
          aria-label="URL"
          width={48}
          value={options.url ?? ''}
          placeholder="http://localhost:9464"
          onChange={onURL}
        />
      </InlineField>
      <InlineField label="Token" labelWidth={16} tooltip="A reader's bearer token from metergate.yml" required>
        <SecretInput
          id="metergate-token"
          aria-label="Token"
          width={48}
          isConfigured={!!options.secureJsonFields?.token}
          value={secure.token ?? ''}
          placeholder="bearer token"
          onChange={onToken}
          onReset={onResetToken}
        />
      </InlineField>
      <InlineField label="Timeout (s)" labelWidth={16}>
        <Input
          id="metergate-timeout"
          aria-label="Timeout"
          type="number"
          width={16}
          value={options.jsonData.timeoutSeconds ?? ''}
          placeholder="120"
          onChange={onTimeout}
        />
      </InlineField>
    </>
  );
}
