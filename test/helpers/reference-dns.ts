import { spawn } from 'node:child_process';
import { freePort } from './ports.js';
import { requireTool } from './tools.js';
import { stopChild } from './child.js';
import { startUnbound, waitForDns, type Unbound } from './unbound.js';

/**
 * The reference servers the conformance tests compare canonport with, all
 * real unbound processes on loopback:
 *
 *   authoritative  unbound serving zones from local-data (AA set, SOA and NS
 *                  at each apex), as a site's own DNS would;
 *   resolver       unbound as a caching resolver that forwards zones to
 *                  given servers: canonport's peer, in the same position
 *                  between a client and the authoritative data;
 *   dnsmasq        the other forwarder people put in front of a resolver.
 */

/** SOA, NS and the NS host's address for `zone`, in unbound local-data syntax. */
export function zoneApex(zone: string, opts: { mname?: string; serial?: number; minimum?: number; nsAddress?: string } = {}): string[] {
  const mname = opts.mname ?? `ns.${zone}`;
  return [
    `${zone}. 3600 IN SOA ${mname}. hostmaster.${zone}. ${opts.serial ?? 1} 3600 600 86400 ${opts.minimum ?? 300}`,
    `${zone}. 3600 IN NS ${mname}.`,
    `${mname}. 3600 IN A ${opts.nsAddress ?? '127.0.0.1'}`,
  ];
}

/** unbound authoritative (local-zone static) for `zones`, holding `localData`. */
export function startAuthoritativeUnbound(zones: string[], localData: string[], extra: string[] = []): Promise<Unbound> {
  return startUnbound({ zones, localData, extra });
}

/**
 * unbound as a caching resolver forwarding each zone to a server on
 * 127.0.0.1 (`.` forwards everything). No validator (module-config is the
 * iterator alone), so it asks its forwarders nothing but the client's questions.
 */
export function startUnboundResolver(forwards: { zone: string; port: number }[], extra: string[] = []): Promise<Unbound> {
  // unbound's configuration grammar ignores indentation: these clauses close the server: section.
  const clauses = forwards.flatMap((f) => ['forward-zone:', `  name: "${f.zone === '.' ? '.' : `${f.zone}.`}"`, `  forward-addr: 127.0.0.1@${f.port}`]);
  return startUnbound({ zones: [], localData: [], extra: [...extra, ...clauses] });
}

export interface Dnsmasq {
  port: number;
  stop(): Promise<void>;
}

/** dnsmasq forwarding everything to `servers` (host#port), no cache, no /etc/hosts, no resolv.conf. */
export async function startDnsmasq(servers: string[]): Promise<Dnsmasq> {
  const bin = requireTool('dnsmasq', 'dnsmasq');
  const port = await freePort();
  const proc = spawn(
    bin,
    ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--pid-file=', `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--cache-size=0', '--user=root', ...servers.map((s) => `--server=${s}`)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (b) => (stderr += b));
  await waitForDns(port, () => (proc.exitCode !== null ? `dnsmasq exited: ${stderr}` : null));
  return {
    port,
    stop: () => stopChild(proc),
  };
}
