import type { Config } from '../config/config.js';
import { accessPolicy, type AccessPolicy } from './access.js';
import { buildChain, type MaybePromise, type Plugin, type PluginDeps, type PluginStage, type SetupContext } from './pipeline.js';
import { aclPlugin } from './plugins/acl/acl.js';
import { cachePlugin } from './plugins/cache/cache.js';
import { chaosPlugin } from './plugins/chaos/chaos.js';
import { forwardPlugin } from './plugins/forward/forward.js';
import { localPlugin } from './plugins/local/local.js';
import type { DnsReply, DnsRequest } from './request.js';

/** Every DNS plugin, in chain order (pipeline.ts says why this order; buildChain checks it). */
const PLUGINS: readonly Plugin<never>[] = [aclPlugin, chaosPlugin, localPlugin, cachePlugin, forwardPlugin] as unknown as Plugin<never>[];

/**
 * The DNS chain as the daemon holds it: built once from the plugins, and
 * reconfigured on reload by running every plugin's setup on the new config,
 * so each setting a plugin reads applies to the next query while stateful
 * parts (the cache's entries, the rate limiter's buckets) stay.
 *
 * The access policy is the chain's, not one plugin's: the server asks it
 * (`mayRecurse`) once per query, and every stage and the reply's RA bit
 * read that one answer from the request.
 */
export class DnsChain {
  readonly handler: (req: DnsRequest) => MaybePromise<DnsReply>;
  private readonly stages: { plugin: Plugin<never>; stage: PluginStage<never> }[];
  private access: AccessPolicy;

  constructor(
    deps: PluginDeps,
    config: Config,
    private readonly ctx: SetupContext,
  ) {
    this.access = accessPolicy(config, ctx);
    this.stages = PLUGINS.map((plugin) => ({ plugin, stage: plugin.create(deps, plugin.setup(config, ctx)) }));
    this.handler = buildChain(this.stages.map((s) => s.stage));
  }

  /** Runs every plugin's setup on `config` and hands each stage its new options; the access policy follows too. */
  configure(config: Config): void {
    this.access = accessPolicy(config, this.ctx);
    for (const { plugin, stage } of this.stages) stage.configure(plugin.setup(config, this.ctx));
  }

  /** May `address` recurse, under the configuration in force? The server asks once per query (DnsRequest.mayRecurse). */
  mayRecurse(address: string): boolean {
    return this.access.mayRecurse(address);
  }

  /** The stage of one plugin (tests and metrics read the cache's size). */
  stage(name: (typeof PLUGINS)[number]['name']): PluginStage<never> {
    return this.stages.find((s) => s.plugin.name === name)!.stage;
  }

  close(): void {
    for (const { stage } of this.stages) stage.close?.();
  }
}
