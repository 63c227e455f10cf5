import type { Command } from 'commander';
import { defaultDaemonAddress, DEFAULT_DAEMON_ADDRESS } from '../../config/address.js';
import { createAdminClient } from '../../grpc/admin-client.js';
import { intOption, printJson, type CliIO, type RegisterCommand } from '../io.js';
import { tlsFromFlags, withTlsOptions, type TlsFlags } from '../options.js';

interface AdminFlags extends TlsFlags {
  daemon?: string;
  json?: boolean;
  wait?: boolean;
  timeout?: string;
}

/**
 * `canonport drain SERVICE [--wait]`, `canonport undrain SERVICE` and
 * `canonport leave`: this host's daemon (loopback gRPC, canonport.v1.Admin)
 * takes the local instances of a service out of every host's answers, puts
 * them back, or withdraws the whole host. A deploy script is
 * `canonport drain api --wait && systemctl restart api`: the restarted
 * instance comes back by itself once its readiness probe says ready.
 */
export const registerDrain: RegisterCommand = (program: Command, io: CliIO) => {
  const daemonOption = `this host's daemon (default $CANONPORT_GRPC, else ${DEFAULT_DAEMON_ADDRESS}); only loopback may call it`;
  withTlsOptions(
    program
      .command('drain')
      .description("take this host's instances of SERVICE out of every host's answers (until they restart, or undrain)")
      .argument('<service>', 'the service, as the inventory names it (api, splashpage-api)')
      .option('--wait', "return only once every live daemon's view has dropped it and the longest TTL handed out for it has run out")
      .option('--timeout <ms>', 'bound of --wait (default 30000); past it: exit 1, CP_DRAIN_TIMEOUT, the drain stays in force')
      .option('--daemon <addr>', daemonOption)
      .option('--json', 'print the DrainResponse as JSON'),
  ).action(async (service: string, flags: AdminFlags) => {
    const timeoutMs = flags.timeout === undefined ? undefined : intOption(flags.timeout, '--timeout', 100, 600_000);
    const client = createAdminClient(flags.daemon ?? defaultDaemonAddress(), { tls: tlsFromFlags(flags) });
    try {
      const r = await client.drain(service, { wait: flags.wait === true, timeoutMs });
      if (flags.json) printJson(io, r);
      else if (r.ports.length === 0) io.out(`${service}: nothing of it listens on this host`);
      else {
        const waited = flags.wait ? `; every live daemon dropped it (${r.acked.length}) and ${r.ttlWaitedMs} ms of TTL ran out` : '';
        const old = r.unconfirmed.length ? `; not confirmable (older canonport): ${r.unconfirmed.join(', ')}` : '';
        io.out(`${service}: drained port ${r.ports.join(', ')}${waited}${old}`);
      }
    } finally {
      client.close();
    }
  });
  withTlsOptions(
    program
      .command('undrain')
      .description("end a drain: this host's instances of SERVICE are back in answers once ready")
      .argument('<service>', 'the service')
      .option('--daemon <addr>', daemonOption)
      .option('--json', 'print the answer as JSON'),
  ).action(async (service: string, flags: AdminFlags) => {
    const client = createAdminClient(flags.daemon ?? defaultDaemonAddress(), { tls: tlsFromFlags(flags) });
    try {
      const r = await client.undrain(service);
      if (flags.json) printJson(io, r);
      else io.out(r.ports.length ? `${service}: undrained port ${r.ports.join(', ')}` : `${service}: was not drained`);
    } finally {
      client.close();
    }
  });
  withTlsOptions(
    program
      .command('leave')
      .description('withdraw this host from the cluster at once (revoke its lease) and stop the daemon: for a host shut down for good')
      .option('--daemon <addr>', daemonOption)
      .option('--json', 'print the answer as JSON'),
  ).action(async (flags: AdminFlags) => {
    const client = createAdminClient(flags.daemon ?? defaultDaemonAddress(), { tls: tlsFromFlags(flags) });
    try {
      const r = await client.leave();
      if (flags.json) printJson(io, r);
      else io.out(`${r.node}: left the cluster; the daemon is stopping`);
    } finally {
      client.close();
    }
  });
};
