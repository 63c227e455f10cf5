import { describe, expect, it } from 'vitest';
import { buildConfig, type Config, type ConfigInput } from '../src/config/config.js';
import { AddressRule, checkListeners, inventoryRule, listenerRule } from '../src/config/listen-policy.js';
import { tryParseCidr } from '../src/config/cidr.js';
import { Registry } from '../src/registry/registry.js';

/**
 * The access rule as a table (src/config/listen-policy.ts): which client
 * addresses a listener lets in for each combination of bind address,
 * allow-list, client certificates and --insecure-listen, and what the
 * start-up check refuses. The servers apply exactly this rule; the network
 * tests (access-netns, tls, insecure-listen) check that they do.
 */

const cfg = (flags: ConfigInput): Config => buildConfig(flags, {}, Registry.empty(), { resolvConf: '/nonexistent' });
const cidrs = (...t: string[]) => t.map((x) => (tryParseCidr(x) as { ok: true; value: never }).value);
const TLS = { grpcTlsCert: '/c.pem', grpcTlsKey: '/k.pem' };

describe('AddressRule', () => {
  const rule = new AddressRule(cidrs('10.0.0.0/8', '2001:db8::/32'), false, '--grpc-allow');
  it.each<[string | undefined, boolean, string]>([
    ['127.0.0.1', true, 'loopback'],
    ['127.3.4.5', true, 'all of 127/8'],
    ['::1', true, 'IPv6 loopback'],
    ['::ffff:127.0.0.1', true, 'loopback through a dual-stack socket'],
    ['10.1.2.3', true, 'in the list'],
    ['::ffff:10.1.2.3', true, 'in the list, through a dual-stack socket'],
    ['2001:db8::7', true, 'IPv6 in the list'],
    ['11.1.2.3', false, 'outside'],
    ['::ffff:11.1.2.3', false, 'outside, through a dual-stack socket'],
    ['2001:db9::7', false, 'IPv6 outside'],
    ['', false, 'no address'],
    [undefined, false, 'no socket'],
  ])('%s → %s (%s)', (address, allowed) => {
    expect(rule.allows(address)).toBe(allowed);
  });
  it('lets every address in when it is open, still none without one', () => {
    const open = new AddressRule([], true, '--grpc-allow');
    expect(open.allows('203.0.113.1')).toBe(true);
    expect(open.allows(undefined)).toBe(false);
  });
});

describe('a listener rule from the settings', () => {
  it.each<[string, ConfigInput, boolean]>([
    ['loopback bind, no list: whoever reaches it', {}, true],
    ['wildcard bind with a list: the list', { grpc: '0.0.0.0:1', grpcAllow: ['10.0.0.0/8'] }, false],
    ['wildcard bind, --insecure-listen: everyone', { grpc: '0.0.0.0:1', insecureListen: true }, true],
    ['wildcard bind, required client certificates: everyone with one', { grpc: '0.0.0.0:1', ...TLS, grpcTlsClientCa: '/ca.pem' }, true],
    ['required certificates and a list: both', { grpc: '0.0.0.0:1', ...TLS, grpcTlsClientCa: '/ca.pem', grpcAllow: ['10.0.0.0/8'] }, false],
    ['loopback bind with a list: the list', { grpcAllow: ['10.0.0.0/8'] }, false],
  ])('%s', (_what, flags, outsiderAllowed) => {
    const r = listenerRule(cfg(flags), 'grpc');
    expect(r.allows('203.0.113.1')).toBe(outsiderAllowed);
    expect(r.allows('127.0.0.1')).toBe(true);
  });

  it('Inventory: the listener rule alone, unless --inventory-allow narrows it', () => {
    expect(inventoryRule(cfg({})).allows('203.0.113.1')).toBe(true);
    const narrow = inventoryRule(cfg({ inventoryAllow: ['10.0.5.0/24'] }));
    expect(narrow.allows('10.0.5.9')).toBe(true);
    expect(narrow.allows('10.0.6.9')).toBe(false);
    expect(narrow.allows('::1')).toBe(true);
  });

  it('HTTP: a client CA gates the listener (every path but the probes)', () => {
    expect(listenerRule(cfg({ http: '0.0.0.0:1', httpTlsCert: '/c', httpTlsKey: '/k', httpTlsClientCa: '/ca' }), 'http').allows('203.0.113.1')).toBe(true);
  });
});

describe('checkListeners', () => {
  const refusal = (flags: ConfigInput) => {
    try {
      checkListeners(cfg(flags));
      return null;
    } catch (err) {
      return err as { code: string; message: string };
    }
  };

  it.each<[string, ConfigInput]>([
    ['the defaults', {}],
    ['a wildcard bind with an allow-list', { grpc: '0.0.0.0:1', grpcAllow: ['10.0.0.0/8'] }],
    ['a node address with required client certificates', { grpc: '10.0.0.5:1', ...TLS, grpcTlsClientCa: '/ca.pem' }],
    ['IPv6 loopback', { grpc: '[::1]:1', http: '[::1]:2' }],
    ['--insecure-listen', { grpc: '[::]:1', http: '0.0.0.0:2', insecureListen: true }],
    ['HTTP with a client CA', { http: '0.0.0.0:1', httpTlsCert: '/c', httpTlsKey: '/k', httpTlsClientCa: '/ca' }],
  ])('accepts %s', (_what, flags) => {
    expect(refusal(flags)).toBeNull();
  });

  it.each<[string, ConfigInput, string, RegExp]>([
    ['gRPC on a wildcard, unprotected', { grpc: '0.0.0.0:1' }, 'CP_INSECURE_LISTEN', /set --grpc-allow CIDR/],
    ['gRPC on a node address with TLS only', { grpc: '10.0.0.5:1', ...TLS }, 'CP_INSECURE_LISTEN', /--grpc-tls-client-ca FILE to require client certificates/],
    ['gRPC with optional client certificates only', { grpc: '0.0.0.0:1', ...TLS, grpcTlsClientCa: '/ca.pem', grpcTlsClientAuth: 'optional' }, 'CP_INSECURE_LISTEN', /--grpc-allow/],
    ['HTTP on a wildcard, unprotected', { http: '[::]:1' }, 'CP_INSECURE_LISTEN', /HTTP would listen on \[::\]:1.*--http-allow CIDR \(CANONPORT_HTTP_ALLOW\)/],
    ['an allow-list for the other listener', { grpc: '0.0.0.0:1', httpAllow: ['10.0.0.0/8'] }, 'CP_INSECURE_LISTEN', /gRPC would listen/],
    ['a certificate without its key', { grpcTlsCert: '/c.pem' }, 'CP_CONFIG_INVALID', /--grpc-tls-cert is set without --grpc-tls-key/],
    ['a key without its certificate', { httpTlsKey: '/k.pem' }, 'CP_CONFIG_INVALID', /--http-tls-key is set without --http-tls-cert/],
    ['a client CA without TLS', { grpcTlsClientCa: '/ca.pem' }, 'CP_CONFIG_INVALID', /--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key/],
    ['optional client certificates without a CA', { ...TLS, grpcTlsClientAuth: 'optional' }, 'CP_CONFIG_INVALID', /--grpc-tls-client-auth optional needs --grpc-tls-client-ca/],
    ['--inventory-require-cert without a client CA', { ...TLS, inventoryRequireCert: true }, 'CP_CONFIG_INVALID', /--inventory-require-cert needs --grpc-tls-client-ca/],
  ])('refuses %s', (_what, flags, code, says) => {
    const err = refusal(flags);
    expect(err?.code).toBe(code);
    expect(err?.message).toMatch(says);
  });
});
