import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

/** `canonport xds-bootstrap` as a real process: stdout is the bootstrap JSON and nothing else. */

describe('canonport xds-bootstrap', () => {
  it('prints a bootstrap pointing at the default daemon address', async () => {
    const r = await runCli(['xds-bootstrap']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const b = JSON.parse(r.stdout);
    expect(b.xds_servers).toEqual([{ server_uri: '127.0.0.1:13655', channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }]);
    expect(b.node.id).toMatch(/^canonport~\S+$/);
    expect(b.node.locality).toEqual({});
  });

  it('takes the address from CANONPORT_GRPC, --server over it, IPv6 bracketed', async () => {
    const env = await runCli(['xds-bootstrap'], { CANONPORT_GRPC: '127.0.0.9:7000' });
    expect(JSON.parse(env.stdout).xds_servers[0].server_uri).toBe('127.0.0.9:7000');
    const flag = await runCli(['xds-bootstrap', '--server', '[::1]:13655', '--node-id', 'host-a'], { CANONPORT_GRPC: '127.0.0.9:7000' });
    const b = JSON.parse(flag.stdout);
    expect(b.xds_servers[0].server_uri).toBe('[::1]:13655');
    expect(b.node.id).toBe('host-a');
    const json = await runCli(['xds-bootstrap', '--json', '--server', '127.0.0.1:1']);
    expect(JSON.parse(json.stdout).xds_servers[0].server_uri).toBe('127.0.0.1:1');
  });

  it('names loopback for a wildcard address (what a daemon listening on 0.0.0.0 or [::] is reached at)', async () => {
    const v4 = await runCli(['xds-bootstrap'], { CANONPORT_GRPC: '0.0.0.0:13655' });
    expect(JSON.parse(v4.stdout).xds_servers[0].server_uri).toBe('127.0.0.1:13655');
    const v6 = await runCli(['xds-bootstrap', '--server', '[::]:7000']);
    expect(JSON.parse(v6.stdout).xds_servers[0].server_uri).toBe('[::1]:7000');
  });

  it('rejects an address that is not ADDR:PORT, and a bad node id, with exit 2 and nothing on stdout', async () => {
    for (const args of [['--server', 'nowhere'], ['--server', '127.0.0.1:99999'], ['--node-id', 'has space']]) {
      const r = await runCli(['xds-bootstrap', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/canonport: /);
    }
  });
});
