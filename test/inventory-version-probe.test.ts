import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_VERSION_LENGTH, parseVersionBody, probeVersion } from '../src/inventory/version-probe.js';
import { closeServer, closedPort, silentTcpServer, versionServer } from './inventory-support.js';

describe('parseVersionBody', () => {
  it.each([
    ['1.4.2', '', '1.4.2'],
    ['1.4.2\n', 'text/plain', '1.4.2'],
    ['  v2.0.0-rc.1  \r\nbuilt 2024-05-01\n', 'text/plain', 'v2.0.0-rc.1'],
    ['{"version":"1.4.2","commit":"abc"}', 'application/json', '1.4.2'],
    ['{"version": 7}', '', '7'],
    ['{"name":"api"}', 'application/json', ''],
    ['{"version": {"major": 1}}', 'application/json', ''],
    ['{not json', '', ''],
    ['<!DOCTYPE html><html>', 'text/html', ''],
    ['<html>', '', ''],
    ['1.0', 'text/html; charset=utf-8', ''],
    ['', 'text/plain', ''],
    ['\n\n', 'text/plain', ''],
    ['x'.repeat(MAX_VERSION_LENGTH), '', 'x'.repeat(MAX_VERSION_LENGTH)],
    ['x'.repeat(MAX_VERSION_LENGTH + 1), '', ''],
    ['1.0\u0007', '', ''], // control characters never reach a Prometheus label
    ['\uFEFF3.1', '', '3.1'],
  ])('%j (%s) → %j', (body, type, version) => {
    expect(parseVersionBody(body, type)).toBe(version);
  });
});

describe('probeVersion against real servers', () => {
  let http: HttpServer;
  let http6: HttpServer;
  let silent: Server;
  let port = 0;
  let port6 = 0;
  let silentPort = 0;
  const listen = (s: Server | HttpServer, host: string) =>
    new Promise<number>((resolve) => s.listen(0, host, () => resolve((s.address() as { port: number }).port)));

  beforeAll(async () => {
    const routes = {
      '/version': { body: '1.4.2\n' },
      '/json': { body: '{"version":"2.0.1"}', type: 'application/json' },
      '/page': { body: '<html><body>hello</body></html>', type: 'text/html' },
      '/broken': { body: 'oops', status: 500 },
      '/long': { body: `${'9'.repeat(10_000)}\n` },
    };
    http = versionServer(routes);
    http6 = versionServer(routes);
    silent = silentTcpServer();
    port = await listen(http, '127.0.0.1');
    port6 = await listen(http6, '::1');
    silentPort = await listen(silent, '127.0.0.1');
  });
  afterAll(async () => {
    await Promise.all([closeServer(http), closeServer(http6), closeServer(silent)]);
  });

  const probe = (path: string, p = port, address = '127.0.0.1', timeoutMs = 2000) => probeVersion({ address, port: p, path, timeoutMs });

  it('reads text and JSON versions, over IPv4 and IPv6', async () => {
    expect(await probe('/version')).toEqual({ outcome: 'ok', version: '1.4.2' });
    expect(await probe('/json')).toEqual({ outcome: 'ok', version: '2.0.1' });
    expect(await probe('/version', port6, '::1')).toEqual({ outcome: 'ok', version: '1.4.2' });
  });

  it('reports failures as outcomes, never throws', async () => {
    expect((await probe('/missing')).outcome).toBe('bad_status');
    expect((await probe('/broken')).outcome).toBe('bad_status');
    expect((await probe('/page')).outcome).toBe('invalid');
    expect((await probe('/long')).outcome).toBe('invalid');
    expect((await probe('/version', await closedPort())).outcome).toBe('refused');
    const quiet = await probe('/version', silentPort, '127.0.0.1', 200);
    expect(quiet).toMatchObject({ outcome: 'timeout', version: '' });
  });
});
