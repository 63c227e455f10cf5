import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import type { ServingState } from '../src/core/state.js';
import type { HostAddresses, HostsSource } from '../src/discovery/discovery.js';
import { NameServerHosts, zoneSerial } from '../src/dns/zone-apex.js';
import { parseRegistry } from '../src/registry/load.js';

/**
 * The zone apex's parts without a daemon: the SOA serial as a digest of
 * the zone's content, and the name server host's addresses (the daemon's
 * DNS address, or its interfaces when bound to a wildcard).
 */

const Z = 'cluster-1.example.com';
const BASE = `zones: [${Z}]\nttl: 30\nservices:\n  caterpillar: { port: 13700 }\n`;

function state(text: string, zones: readonly string[] = ['localhost', Z]): ServingState {
  return { registry: parseRegistry(text, 'r.yaml'), zones };
}

describe('zoneSerial: a digest of what the zone is made of', () => {
  it('is the same for the same content read twice (two hosts, or a reload of an unchanged file)', () => {
    expect(zoneSerial(state(BASE), Z)).toBe(zoneSerial(state(BASE), Z));
  });

  it('changes with anything the zone answers from: a service, a port, the TTL, a host in the zone, a zone below it', () => {
    const before = zoneSerial(state(BASE), Z);
    const changed = [
      state(`${BASE}  legacy: { port: 9999 }\n`),
      state(BASE.replace('13700', '13701')),
      state(BASE.replace('ttl: 30', 'ttl: 31')),
      state(`${BASE}hosts:\n  api.${Z}: [10.0.0.5]\n`),
      state(BASE, ['localhost', Z, `east.${Z}`]),
    ];
    for (const s of changed) expect(zoneSerial(s, Z)).not.toBe(before);
  });

  it('does not change with what the zone is not made of: daemon settings, another zone\'s hosts', () => {
    const before = zoneSerial(state(BASE), Z);
    expect(zoneSerial(state(`${BASE}daemon:\n  logLevel: debug\n  cacheSize: 10\n`), Z)).toBe(before);
    expect(zoneSerial(state(`${BASE}hosts:\n  api.other.example: [10.0.0.5]\n`), Z)).toBe(before);
  });

  it('differs between zones of the same registry (each SOA names its own zone)', () => {
    const s = state(BASE, ['localhost', Z, 'svc.example']);
    expect(zoneSerial(s, Z)).not.toBe(zoneSerial(s, 'svc.example'));
  });
});

/** A hosts file with the given entries, whose generation the test moves. */
function fakeHosts(entries: Record<string, HostAddresses> = {}): HostsSource & { generation: number } {
  return { generation: 1, lookup: (h) => entries[h] ?? null };
}

const iface = (address: string, family: 'IPv4' | 'IPv6', internal = false) => ({ address, family, internal }) as NetworkInterfaceInfo;

describe('NameServerHosts: ns.<zone> at the daemon\'s own address', () => {
  const zones = () => ['localhost', Z];

  it('bound to one address: that address, for ns.<zone> of every served zone and nothing else', () => {
    const hosts = new NameServerHosts(fakeHosts(), { zones, listen: { host: '10.1.2.3', port: 53 } });
    expect(hosts.lookup(`ns.${Z}`)).toEqual({ v4: ['10.1.2.3'], v6: [] });
    expect(hosts.lookup(`ns.other.example`)).toBeNull();
    expect(hosts.lookup(`api.${Z}`)).toBeNull();
    const v6 = new NameServerHosts(fakeHosts(), { zones, listen: { host: '2001:db8::53', port: 53 } });
    expect(v6.lookup(`ns.${Z}`)).toEqual({ v4: [], v6: ['2001:db8::53'] });
  });

  it('the inner hosts source (/etc/hosts) names it instead when it has it', () => {
    const hosts = new NameServerHosts(fakeHosts({ [`ns.${Z}`]: { v4: ['192.0.2.53'], v6: [] } }), { zones, listen: { host: '10.1.2.3', port: 53 } });
    expect(hosts.lookup(`ns.${Z}`)).toEqual({ v4: ['192.0.2.53'], v6: [] });
  });

  it('bound to 0.0.0.0: the host\'s IPv4 addresses but loopback; bound to ::, IPv6 too but link-local; loopback when there is nothing else', () => {
    const ifaces = { lo: [iface('127.0.0.1', 'IPv4', true), iface('::1', 'IPv6', true)], eth0: [iface('10.0.0.7', 'IPv4'), iface('fe80::1', 'IPv6'), iface('2001:db8::7', 'IPv6')] };
    const v4only = new NameServerHosts(fakeHosts(), { zones, listen: { host: '0.0.0.0', port: 53 }, interfaces: () => ifaces });
    expect(v4only.lookup(`ns.${Z}`)).toEqual({ v4: ['10.0.0.7'], v6: [] });
    const dual = new NameServerHosts(fakeHosts(), { zones, listen: { host: '::', port: 53 }, interfaces: () => ifaces });
    expect(dual.lookup(`ns.${Z}`)).toEqual({ v4: ['10.0.0.7'], v6: ['2001:db8::7'] });
    const lonely = new NameServerHosts(fakeHosts(), { zones, listen: { host: '0.0.0.0', port: 53 }, interfaces: () => ({ lo: ifaces.lo }) });
    expect(lonely.lookup(`ns.${Z}`)).toEqual({ v4: ['127.0.0.1'], v6: [] });
  });

  it('re-reads the interfaces at most every 5 s, and its generation moves when they change, as when /etc/hosts changes', () => {
    const clock = { now: 0 };
    let address = '10.0.0.7';
    let reads = 0;
    const inner = fakeHosts();
    const hosts = new NameServerHosts(inner, {
      zones,
      listen: { host: '0.0.0.0', port: 53 },
      now: () => clock.now,
      interfaces: () => {
        reads++;
        return { eth0: [iface(address, 'IPv4')] };
      },
    });
    const g0 = hosts.generation;
    expect(hosts.lookup(`ns.${Z}`)?.v4).toEqual(['10.0.0.7']);
    address = '10.0.0.8';
    clock.now = 4000;
    expect(hosts.lookup(`ns.${Z}`)?.v4).toEqual(['10.0.0.7']);
    expect(hosts.generation).toBe(g0);
    expect(reads).toBe(1);
    clock.now = 5000;
    expect(hosts.lookup(`ns.${Z}`)?.v4).toEqual(['10.0.0.8']);
    const g1 = hosts.generation;
    expect(g1).not.toBe(g0);
    inner.generation++;
    expect(hosts.generation).not.toBe(g1);
  });
  // Issue 21, finding 1: out of descriptors, os.networkInterfaces() throws EMFILE; read from Discovery's
  // poll timer, that throw killed the daemon. It must keep the last addresses and say so instead.
  it('out of descriptors (interfaces throw EMFILE): lookup and generation never throw, the last addresses stay, the error is reported', () => {
    const clock = { now: 0 };
    let fail = false;
    const errors: string[] = [];
    const hosts = new NameServerHosts(fakeHosts(), {
      zones,
      listen: { host: '0.0.0.0', port: 53 },
      now: () => clock.now,
      interfaces: () => {
        if (fail) throw Object.assign(new Error('uv_interface_addresses returned Unknown system error -24'), { code: 'EMFILE' });
        return { eth0: [iface('10.0.0.7', 'IPv4')] };
      },
      onError: (err) => errors.push(err.code ?? ''),
    });
    const g0 = hosts.generation;
    fail = true;
    clock.now = 6000;
    expect(() => hosts.generation).not.toThrow();
    expect(hosts.generation).toBe(g0);
    expect(hosts.lookup(`ns.${Z}`)).toEqual({ v4: ['10.0.0.7'], v6: [] });
    expect(errors).toEqual(['EMFILE']);
    // A fresh one that never read them answers loopback rather than throw.
    const fresh = new NameServerHosts(fakeHosts(), { zones, listen: { host: '0.0.0.0', port: 53 }, interfaces: () => { throw Object.assign(new Error('EMFILE'), { code: 'EMFILE' }); } });
    expect(fresh.lookup(`ns.${Z}`)).toEqual({ v4: ['127.0.0.1'], v6: [] });
    fail = false;
    clock.now = 12_000;
    expect(hosts.lookup(`ns.${Z}`)).toEqual({ v4: ['10.0.0.7'], v6: [] });
  });
});
