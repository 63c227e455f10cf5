import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base32Port } from '../src/scheme/index.js';
import { startBrowser, startBrowserForContexts } from './helpers/browser.js';
import { until } from './helpers/cluster.js';
import { startBackend, startLab, startNode, DNS_PORT, GRPC_PORT, HTTP_PORT, ZONE, type Backend, type Lab, type NodeDaemon } from './helpers/cluster-lab.js';
import { tempDir, writeRegistry } from './helpers/daemon.js';
import { freePort } from './helpers/ports.js';
import { REPO, startServe, type ServeProcess } from './helpers/serve-process.js';
import { writeScaleFleet } from './helpers/scale-fleet.js';
import { FIRST_SCREEN_HOSTS } from '../src/ui/client/model.js';
import etcd3 from 'etcd3';
import { writeFileSync } from 'node:fs';

/**
 * The fleet page in a real browser (Debian's Chromium, headless, driven by
 * playwright-core) against real daemons in cluster mode with real etcd:
 * three hosts (network namespaces, test/helpers/cluster-lab.ts) run `api`,
 * web-3 at another version and with another registry. The browser runs in
 * the root namespace and opens web-1's page over the bridge. Screenshots of
 * the three views go to test-results/ui/ (gitignored).
 */

const API = base32Port('api');
const BLOG = base32Port('blog');
const SHOTS = join(REPO, 'test-results', 'ui');
/** A listener that starts or stops reaches every host's view within ~1 s (README, cluster figures); the page adds at most 1 s of debounce. */
const CONVERGENCE_MS = 15_000;

let lab: Lab;
/** The daemons (lab.stop kills them with their hosts). */
const daemons: (NodeDaemon | ServeProcess)[] = [];
const backends: Backend[] = [];
let browser: Awaited<ReturnType<typeof startBrowser>>;
let context: BrowserContext;
let url: string;
/** web-1 and web-2's registry file. */
let common: string;

/** The cells of a matrix row as `host: text`, from the page. */
async function row(page: Page, service: string): Promise<Record<string, string> | null> {
  return page.evaluate((name) => {
    const table = document.querySelector('table.matrix');
    if (!table) return null;
    const hosts = [...table.querySelectorAll('thead th.host a')].map((a) => a.textContent ?? '');
    const tr = [...table.querySelectorAll('tbody tr')].find((r) => r.querySelector('th.svc a')?.textContent === name);
    if (!tr) return null;
    const cells = [...tr.querySelectorAll('td')];
    return Object.fromEntries(hosts.map((h, i) => [h, (cells[i]?.textContent ?? '').replace(/\s+/g, ' ').trim()]));
  }, service);
}

const rows = (page: Page) => page.$$eval('table.matrix tbody th.svc a', (as) => as.map((a) => a.textContent));

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  lab = await startLab({ hosts: 3 });
  const [h1, h2, h3] = lab.hosts as [typeof lab.hosts[0], typeof lab.hosts[0], typeof lab.hosts[0]];
  // web-1 and web-2 share a registry; web-3's pins one more service: its digest differs.
  // api is listed so the registry names it (issue 22: a listener nothing names is shown apart, not as a service).
  common = writeRegistry('inventory:\n  versionPath: /version\nservices:\n  api: {}\n  blog: {}\n');
  const other = writeRegistry('inventory:\n  versionPath: /version\nservices:\n  api: {}\n  blog: {}\n  legacy: { port: 40123 }\n');
  backends.push(
    await startBackend(h1, 'http', API, 'api', { version: '1.4.2' }),
    await startBackend(h2, 'http', API, 'api', { version: '1.4.2' }),
    await startBackend(h3, 'http', API, 'api', { version: '1.5.0' }),
  );
  daemons.push(...(await Promise.all([startNode(lab, h1, 'web-1', ['--registry', common]), startNode(lab, h2, 'web-2', ['--registry', common])])));
  // web-3 lets no one but itself read its HTTP paths: the browser, at the bridge's gateway, is outside its --http-allow.
  const web3 = await startServe(['--zone', ZONE, '--cluster', lab.etcdUrl, '--node', 'web-3', '--registry', other], {
    listen: ['--dns', `${h3.address}:${DNS_PORT}`, '--grpc', `${h3.address}:${GRPC_PORT}`, '--http', `${h3.address}:${HTTP_PORT}`, '--grpc-allow', `${lab.net.subnet}.0/24`, '--http-allow', `${h3.address}/32`],
    spawn: (cmd, argv, o) => h3.spawn(cmd, argv, o),
    readyMs: 40_000,
  });
  daemons.push(web3);
  url = `http://${h1.address}:${HTTP_PORT}/ui/`;
  // Every host published, with its probed version.
  await until(
    'web-1 sees api on three hosts at 1.4.2 and 1.5.0',
    async () => {
      const doc = (await (await fetch(`${url}api/fleet`)).json()) as { services: { service: string; versions: { version: string; hosts: string[] }[] }[] };
      const api = doc.services.find((s) => s.service === 'api');
      const at = (v: string) => api?.versions.find((x) => x.version === v)?.hosts.length;
      return at('1.4.2') === 2 && at('1.5.0') === 1 ? true : undefined;
    },
    40_000,
    250,
  );
  browser = await startBrowser();
  context = browser.context;
}, 150_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all(backends.map((b) => b.stop()));
  await lab?.stop();
}, 60_000);

describe('the fleet page against three real daemons in cluster mode', () => {
  it('shows the services and versions the hosts run: the mixed version and the host whose registry differs flagged', async () => {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector('table.matrix');
    expect(await row(page, 'api')).toEqual({
      'web-1': '1.4.2 ✓ ready',
      'web-2': '1.4.2 ✓ ready',
      'web-3': '1.5.0 ✓ ready≠, not the majority version 1.4.2',
    });
    const api = page.locator('tbody th.svc', { hasText: 'api' });
    await expect.poll(() => api.textContent()).toContain('3/3 hosts, 2 versions');
    expect(await api.textContent()).toContain('mixed');
    // Its protocol, and where its name comes from (issue 22).
    expect(await api.textContent()).toContain(`${API}/tcp · base32 · named by the registry`);
    expect(await page.locator('td.cell.outlier').count()).toBe(1);
    expect(await page.locator('thead th.host.outlier').textContent()).toContain('web-3');
    expect(await page.locator('thead th.host.outlier').textContent()).toContain('registry differs');
    const findings = (await page.locator('section.findings').textContent()) ?? '';
    expect(findings).toContain('mixed versions api: 1.4.2 on 2, 1.5.0 on 1');
    expect(findings).toContain('registry differs web-3');
    await expect.poll(() => page.locator('#live').getAttribute('data-state')).toBe('live');
    expect(await page.locator('#source').textContent()).toContain('as daemon web-1 sees it');
    await page.screenshot({ path: join(SHOTS, 'matrix.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('comes drawn: with scripts off, the page shows the matrix the daemon drew, flags and findings included', async () => {
    // A browser of its own, for a context that runs no script of the page: what is on the screen is the HTML as served.
    const plain = await startBrowserForContexts();
    try {
      const page = await (await plain.newContext({ javaScriptEnabled: false })).newPage();
      await page.goto(url);
      expect(await row(page, 'api')).toEqual({
        'web-1': '1.4.2 ✓ ready',
        'web-2': '1.4.2 ✓ ready',
        'web-3': '1.5.0 ✓ ready≠, not the majority version 1.4.2',
      });
      expect(await page.locator('section.findings').textContent()).toContain('mixed versions api: 1.4.2 on 2, 1.5.0 on 1');
      expect(await page.locator('thead th.host.outlier').textContent()).toContain('registry differs');
      expect(await page.locator('#source').textContent()).toContain('as daemon web-1 sees it');
      // No script ran: nothing followed the daemon.
      expect(await page.locator('#live').getAttribute('data-state')).toBe('connecting');
    } finally {
      await plain.close();
    }
  }, 60_000);

  it('a listener that starts or stops on another host appears and disappears on the open page, with no reload', async () => {
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('table.matrix');
    let navigations = 0;
    page.on('framenavigated', () => navigations++);
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    expect(await rows(page)).toEqual(['api']);
    // A reader on the api row keeps their place through the updates.
    await page.focus('tbody th.svc');
    const blog = await startBackend(lab.hosts[1]!, 'http', BLOG, 'blog', { version: '2.0.0' });
    try {
      await page.waitForFunction(() => [...document.querySelectorAll('tbody th.svc a')].some((a) => a.textContent === 'blog'), undefined, { timeout: CONVERGENCE_MS });
      await expect.poll(() => row(page, 'blog'), { timeout: CONVERGENCE_MS }).toMatchObject({ 'web-1': 'not running', 'web-2': '2.0.0 ✓ ready' });
    } finally {
      await blog.stop();
    }
    await page.waitForFunction(() => ![...document.querySelectorAll('tbody th.svc a')].some((a) => a.textContent === 'blog'), undefined, { timeout: CONVERGENCE_MS });
    expect(await rows(page)).toEqual(['api']);
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
    expect(navigations).toBe(0);
    expect(await page.evaluate(() => document.activeElement?.closest('th.svc')?.querySelector('a')?.textContent)).toBe('api');
    await page.close();
  });

  it('filters by service, host, version and state, and keeps them in the address', async () => {
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('table.matrix');
    await page.fill('input[name=version]', '1.5');
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#/?version=1.5');
    await expect.poll(async () => Object.keys((await row(page, 'api')) ?? {})).toEqual(['web-3']);
    await page.fill('input[name=version]', '');
    await page.fill('input[name=host]', 'web-2');
    await expect.poll(async () => Object.keys((await row(page, 'api')) ?? {})).toEqual(['web-2']);
    await page.selectOption('select[name=state]', 'draining');
    await expect.poll(() => page.locator('main').textContent()).toContain('Nothing matches the filters.');
    await page.selectOption('select[name=state]', 'ready');
    await page.fill('input[name=service]', 'nope');
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#/?service=nope&host=web-2&state=ready');
    await expect.poll(() => page.locator('main').textContent()).toContain('Nothing matches the filters.');
    await page.click('button[type=reset]');
    await expect.poll(async () => Object.keys((await row(page, 'api')) ?? {})).toEqual(['web-1', 'web-2', 'web-3']);
    expect(await page.evaluate(() => location.hash)).toBe('#/');
    await page.close();
  });

  it('gives every view its own address: a service\'s page with its names and the dig line that works, a host\'s page with its record', async () => {
    const page = await context.newPage();
    await page.goto(`${url}#/service/api?version=1.4.2`);
    await page.waitForSelector('table.list');
    const hosts = await page.$$eval('table.list tbody th a', (as) => as.map((a) => a.textContent));
    expect(hosts.slice(0, 2)).toEqual(['web-1', 'web-2']);
    expect(await page.locator('main').textContent()).toContain('Endpoints of api (filtered: 2 shown)');
    const main = (await page.locator('main').textContent()) ?? '';
    for (const name of [`api.${ZONE}`, `_api._tcp.${ZONE}`, `canon:///api.${ZONE}`, `xds:///api.${ZONE}`]) expect(main).toContain(name);
    const lines = ((await page.locator('pre.commands').textContent()) ?? '').split('\n');
    const h1 = lab.hosts[0]!.address;
    expect(lines[0]).toBe(`dig @${h1} +short SRV _api._tcp.${ZONE}`);
    expect(lines[2]).toBe(`grpcurl -plaintext -d '{"name":"api.${ZONE}"}' ${h1}:${GRPC_PORT} canonport.v1.Canonport/Resolve`);
    // The dig line, run as shown, names the three hosts: the daemon's own (web-1) first, at the better priority.
    const srv = execFileSync('dig', lines[0]!.split(' ').slice(1), { encoding: 'utf8' }).trim().split('\n').sort();
    expect(srv).toEqual([`0 10 ${API} web-1.node.${ZONE}.`, ...['web-2', 'web-3'].map((n) => `1 10 ${API} ${n}.node.${ZONE}.`)]);
    await page.screenshot({ path: join(SHOTS, 'service.png'), fullPage: true });

    await page.goto(`${url}#/host/web-3`);
    await page.waitForSelector('dl.facts');
    const facts = (await page.locator('dl.facts').textContent()) ?? '';
    expect(facts).toContain(lab.hosts[2]!.address);
    expect(facts).toMatch(/Registry digest[0-9a-f]{64}.*differs from the majority's [0-9a-f]{12}/);
    expect(facts).toContain('now: its lease is alive in the view');
    expect(await page.locator('table.list tbody').textContent()).toContain('1.5.0');
    await page.screenshot({ path: join(SHOTS, 'host.png'), fullPage: true });
    await page.close();
  });

  it('moves through the matrix with the keyboard and opens a cell with Enter', async () => {
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('table.matrix');
    await page.focus('table.matrix th.corner');
    await page.keyboard.press('ArrowDown');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toContain('api');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('tabindex'))).toBe('0');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.evaluate(() => location.hash)).toBe('#/service/api?host=web-2');
    // Focus goes to the new view's heading, as on a page load.
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('view-h');
    await page.close();
  });

  it('says when its daemon is gone, keeps the last data, and follows the daemon again once it is back', async () => {
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('table.matrix');
    await expect.poll(() => page.locator('#live').getAttribute('data-state')).toBe('live');
    const web1 = daemons[0]!;
    await web1.stop();
    await page.waitForSelector('#live[data-state=offline]', { timeout: CONVERGENCE_MS });
    expect(await page.locator('#live').textContent()).toMatch(/^Not live since .*shown is the last data received\.$/);
    expect(await row(page, 'api')).toMatchObject({ 'web-1': expect.stringContaining('1.4.2') });
    daemons[0] = await startNode(lab, lab.hosts[0]!, 'web-1', ['--registry', common]);
    // The page retries with a growing delay (1, 2, 4… s); the new daemon's documents are another process's: it fetches the document again.
    await page.waitForSelector('#live[data-state=live]', { timeout: 30_000 });
    await expect.poll(() => row(page, 'api'), { timeout: CONVERGENCE_MS }).toMatchObject({ 'web-1': expect.stringContaining('1.4.2'), 'web-3': expect.stringContaining('1.5.0') });
    await page.close();
  }, 60_000);

  it('refuses a client outside --http-allow with 403, page and data alike', async () => {
    // An outsider holds at most two connections at once (the gate at accept, docs/security.md), and Chromium keeps
    // the page's open: the data paths are asked first, one connection each, closed after the answer.
    for (const path of ['api/fleet', 'api/events']) expect(await statusOf(`http://${lab.hosts[2]!.address}:${HTTP_PORT}/ui/${path}`)).toBe(403);
    const page = await context.newPage();
    const res = await page.goto(`http://${lab.hosts[2]!.address}:${HTTP_PORT}/ui/`);
    expect(res?.status()).toBe(403);
    expect(await page.textContent('body')).toContain('forbidden');
    await page.close();
  });

  it('draws a fleet larger than the first screen in two steps, from one answer: its first columns (drawn by the daemon), mixed versions already flagged, then every host', async () => {
    // 45 hosts of 3 services in the lab's etcd under a prefix of their own, node-00040 at another version; a daemon on loopback views them.
    const prefix = '/canonport-ui-first';
    const client = new etcd3.Etcd3({ hosts: lab.etcdUrl.replace(/^etcd:\/\//, '').split(',').map((h) => `http://${h}`) });
    let viewer: ServeProcess | undefined;
    try {
      await writeScaleFleet(client, prefix, { nodes: 45, services: 3, version: (i) => (i === 40 ? '1.1.0' : '1.0.0') });
      // An empty /proc of its own: the viewer publishes no listener.
      const proc = tempDir('canonport-ui-first-proc-');
      mkdirSync(join(proc, 'net'), { recursive: true });
      for (const f of ['tcp', 'tcp6']) writeFileSync(join(proc, 'net', f), '  sl  local_address rem_address   st\n');
      viewer = await startServe(['--zone', ZONE, '--cluster', lab.etcdUrl, '--cluster-prefix', prefix, '--node', 'viewer', '--proc-root', proc]);
      const base = `http://127.0.0.1:${viewer.http.port}/ui/`;
      await until('the viewer sees the 45 hosts and itself', async () => (((await (await fetch(`${base}api/fleet`)).json()) as { hosts: unknown[] }).hosts.length === 46 ? true : undefined), 40_000, 250);
      const page = await context.newPage();
      // Every matrix the page draws: its host columns, and whether the aax-svc row is flagged mixed.
      await page.addInitScript(() => {
        const drawn: { columns: number; mixed: boolean }[] = ((window as unknown as { drawn: unknown[] }).drawn = []) as { columns: number; mixed: boolean }[];
        new MutationObserver(() => {
          const table = document.querySelector('table.matrix');
          if (table) drawn.push({ columns: table.querySelectorAll('thead th.host').length, mixed: !!table.querySelector('tbody th.svc.mixed') });
        }).observe(document, { childList: true, subtree: true });
      });
      // Every request the page makes: the page itself, then only the whole document and the live stream (its style,
      // script and first screen are inline: nothing else is asked before it draws).
      const asked: string[] = [];
      page.on('request', (r) => void (r.url().startsWith('http') && asked.push(new URL(r.url()).pathname)));
      await page.goto(base);
      // The page came with the first screen's document inline (page.ts): every host, only the first FIRST_SCREEN_HOSTS with listeners.
      const inline = await page.evaluate(() => {
        const el = document.getElementById('cp-doc')!;
        return { firstScreen: el.dataset.firstScreen !== undefined, doc: JSON.parse(el.textContent!) as { hosts: { host: string; inventory?: { listeners: unknown[] } }[] } };
      });
      expect(inline.firstScreen).toBe(true);
      expect(inline.doc.hosts).toHaveLength(46);
      expect(inline.doc.hosts.filter((h) => h.inventory).length).toBe(FIRST_SCREEN_HOSTS);
      await page.waitForFunction(() => document.documentElement.dataset.fleetId !== undefined);
      await page.waitForFunction(() => document.querySelectorAll('table.matrix thead th.host').length === 46);
      const drawn = await page.evaluate(() => (window as unknown as { drawn: { columns: number; mixed: boolean }[] }).drawn);
      // The page came with the first screen's columns drawn, the mixed row flagged already (its services are whole; page.ts firstScreenHtml)...
      const page0 = await (await fetch(base)).text();
      const served = page0.slice(page0.indexOf('<main id="view"'), page0.indexOf('</main>'));
      expect(served.match(/<th scope="col" class="host[^"]*" data-r="0"/g)).toHaveLength(FIRST_SCREEN_HOSTS);
      expect(served).toContain('<th scope="row" class="svc mixed"');
      // ...and the page ends with every host.
      expect(drawn.at(-1)).toEqual({ columns: 46, mixed: true });
      expect(await page.locator('section.findings').textContent()).toContain('mixed versions aax-svc: 1.0.0 on 44, 1.1.0 on 1');
      expect((await row(page, 'aax-svc'))?.['node-00040']).toContain('1.1.0');
      await page.waitForFunction(() => document.getElementById('live')?.dataset.state === 'live');
      expect(asked).toEqual(['/ui/', '/ui/api/fleet', '/ui/api/events']);
      // A view the first screen cannot draw, opened directly, is drawn from the whole document.
      await page.goto(`${base}#/host/node-00044`);
      await page.waitForSelector('dl.facts');
      expect(await page.locator('table.list tbody tr').count()).toBe(3);
      await page.close();
    } finally {
      await viewer?.stop();
      await client.delete().prefix(prefix);
      client.close();
    }
  }, 90_000);

  it('shows a view gone stale as stale, the last hosts still there, when etcd goes away', async () => {
    const page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('table.matrix');
    await lab.etcd.killAll();
    // The daemon marks its view stale once its keepalive to etcd fails (10 s + 5 s).
    await page.waitForSelector('.banner-stale', { timeout: 40_000 });
    expect(await page.locator('.banner-stale').textContent()).toContain('Cluster view stale');
    expect(await row(page, 'api')).toMatchObject({ 'web-1': expect.stringContaining('1.4.2') });
    await page.close();
  }, 60_000);
});

describe('the fleet page of a daemon that has no cluster view', () => {
  it('says there is no view, never that the fleet is empty', async () => {
    const closed = await freePort();
    const serve = await startServe(['--zone', ZONE, '--cluster', `etcd://127.0.0.1:${closed}`, '--node', 'lonely']);
    try {
      const page = await context.newPage();
      await page.goto(`http://127.0.0.1:${serve.http.port}/ui/`);
      await page.waitForSelector('.banner-missing');
      expect(await page.locator('.banner-missing').textContent()).toContain('this is not an empty fleet');
      expect(await page.locator('main').textContent()).toContain('there is no cluster view');
      expect(await page.locator('main').textContent()).not.toContain('No host is in the view');
      await page.close();
    } finally {
      await serve.stop();
    }
  });
});

/** The status of one GET on a connection of its own, closed after the answer (fetch would keep it for the next). */
function statusOf(url: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    }).on('error', reject);
  });
}
