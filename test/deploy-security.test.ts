import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { buildConfig, configFromEnv, ENV_VARS, type Config } from '../src/config/config.js';
import { checkListeners, inventoryRule, listenerRule } from '../src/config/listen-policy.js';
import { OPEN_PATHS } from '../src/http/policy.js';
import { Registry } from '../src/registry/registry.js';

/**
 * deploy/ with the access settings: each deployment's gRPC and HTTP
 * listeners pass the start-up check (config/listen-policy.ts), and the rule
 * they end up with lets in who the files say and no one else: the host's
 * own programs (systemd), Docker's bridge (the image), the node and its pod
 * network (the DaemonSet), with the kubelet's probes always answered. The
 * commented examples in the systemd environment file are checked too, so
 * what an operator uncomments starts.
 */

const DEPLOY = fileURLToPath(new URL('../deploy', import.meta.url));
const read = (rel: string) => readFileSync(join(DEPLOY, rel), 'utf8');
const NO_RESOLV = { resolvConf: '/nonexistent' };

/** KEY=VALUE lines of an EnvironmentFile (systemd has no inline comments); `commented` takes the `#KEY=VALUE` examples instead. */
function envFile(text: string, commented = false): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = commented ? raw.replace(/^#(?=CANONPORT_)/, '') : raw;
    const m = /^(CANONPORT_[A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

function configOf(env: Record<string, string>): Config {
  const cfg = buildConfig({}, configFromEnv(env), Registry.empty(), NO_RESOLV);
  checkListeners(cfg);
  return cfg;
}

describe('deploy/systemd/canonport.env', () => {
  const text = read('systemd/canonport.env');

  it('keeps gRPC and HTTP on loopback, where every local program and no other host reaches them', () => {
    const cfg = configOf(envFile(text));
    expect(cfg.grpc.host).toBe('127.0.0.1');
    expect(cfg.http.host).toBe('127.0.0.1');
    expect(cfg.insecureListen).toBe(false);
    expect(listenerRule(cfg, 'grpc').allows('127.0.0.1')).toBe(true);
  });

  it('has commented examples that, uncommented, name only real variables and start', () => {
    const examples = envFile(text, true);
    for (const k of Object.keys(examples)) expect(ENV_VARS as readonly string[], k).toContain(k);
    for (const k of ['CANONPORT_GRPC_ALLOW', 'CANONPORT_INVENTORY_ALLOW', 'CANONPORT_HTTP_ALLOW', 'CANONPORT_GRPC_TLS_CERT', 'CANONPORT_GRPC_TLS_CLIENT_CA']) {
      expect(Object.keys(examples)).toContain(k);
    }
    const cfg = configOf(examples);
    expect(cfg.grpc.host).toBe('0.0.0.0');
    expect(listenerRule(cfg, 'grpc').allows('10.20.30.40')).toBe(true);
    expect(listenerRule(cfg, 'grpc').allows('192.0.2.1')).toBe(false);
    expect(inventoryRule(cfg).allows('10.20.30.40')).toBe(false);
    // Without the allow-lists and the client CA, the same addresses are refused at start.
    const open = Object.fromEntries(Object.entries(examples).filter(([k]) => !/_ALLOW$|_CLIENT_CA$/.test(k)));
    expect(() => configOf(open)).toThrow(expect.objectContaining({ code: 'CP_INSECURE_LISTEN' }));
  });
});

describe('deploy/docker/Dockerfile', () => {
  /** The runtime stage's ENV, continuation lines joined. */
  function imageEnv(): Record<string, string> {
    const text = read('docker/Dockerfile').replace(/\\\n/g, ' ');
    const stages = text.split(/^FROM /m);
    const env: Record<string, string> = {};
    for (const line of stages.at(-1)!.split('\n')) {
      const m = /^ENV\s+(.*)$/.exec(line.trim());
      if (m) for (const kv of m[1]!.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[kv[1]!] = kv[2]!.replace(/^"|"$/g, '');
    }
    return env;
  }

  it('listens on every address of the container and serves only Docker bridge networks', () => {
    const env = imageEnv();
    const cfg = configOf(Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('CANONPORT_'))));
    expect(cfg.grpc.host).toBe('0.0.0.0');
    for (const l of ['grpc', 'http'] as const) {
      const rule = listenerRule(cfg, l);
      expect(rule.allows('172.17.0.1'), `${l}: the host, through a published port`).toBe(true);
      expect(rule.allows('172.18.0.5'), `${l}: a container on a user network`).toBe(true);
      expect(rule.allows('203.0.113.9'), `${l}: another host`).toBe(false);
    }
  });
});

describe('deploy/kubernetes/daemonset.yaml', () => {
  const ds = parseAllDocuments(read('kubernetes/daemonset.yaml'))
    .map((d) => d.toJS() as { kind?: string; spec?: unknown })
    .find((o) => o.kind === 'DaemonSet') as {
    spec: { template: { spec: { containers: Array<{ env: Array<{ name: string; value?: string }>; livenessProbe: { httpGet: { path: string } }; readinessProbe: { httpGet: { path: string } } }> } } };
  };
  const c = ds.spec.template.spec.containers[0]!;

  function envFor(nodeIp: string): Record<string, string> {
    const env: Record<string, string> = {};
    for (const v of c.env) if (typeof v.value === 'string') env[v.name] = v.value.replace(/\$\(NODE_IP\)/g, nodeIp);
    return env;
  }

  for (const [nodeIp, family] of [
    ['10.1.2.3', 'IPv4'],
    ['fd00:1::3', 'IPv6'],
  ] as const) {
    it(`binds the node's IP and lets in the node and the pod network, the node alone for Inventory and /metrics (${family})`, () => {
      const cfg = configOf(envFor(nodeIp));
      expect(cfg.grpc.host).toBe(nodeIp);
      expect(cfg.http.host).toBe(nodeIp);
      const grpc = listenerRule(cfg, 'grpc');
      const http = listenerRule(cfg, 'http');
      const inventory = inventoryRule(cfg);
      const pod = '10.244.7.9';
      const otherNode = family === 'IPv4' ? '10.1.2.4' : 'fd00:1::4';
      expect(grpc.allows(nodeIp)).toBe(true);
      expect(grpc.allows(pod)).toBe(true);
      expect(grpc.allows(otherNode)).toBe(false);
      expect(inventory.allows(nodeIp)).toBe(true);
      expect(inventory.allows(pod)).toBe(false);
      expect(http.allows(nodeIp)).toBe(true);
      expect(http.allows(pod)).toBe(false);
      expect(http.allows(otherNode)).toBe(false);
    });
  }

  it("probes paths that every client may ask, so the kubelet needs no allow-list entry", () => {
    expect(OPEN_PATHS.has(c.livenessProbe.httpGet.path)).toBe(true);
    expect(OPEN_PATHS.has(c.readinessProbe.httpGet.path)).toBe(true);
  });

  it('would not start without its allow-lists', () => {
    const open = Object.fromEntries(Object.entries(envFor('10.1.2.3')).filter(([k]) => !k.endsWith('_ALLOW')));
    expect(() => configOf(open)).toThrow(expect.objectContaining({ code: 'CP_INSECURE_LISTEN' }));
  });
});
