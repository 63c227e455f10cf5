import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';

/**
 * Debian's Chromium, headless, driven by playwright-core: nothing downloads
 * a browser. The flags keep it off the network (this machine has none but
 * the package registries: background requests would be refused, many at a
 * time) and out of the user's profile.
 */

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function requireChromium(): void {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is not installed: apt-get install -y chromium (test/preflight.sh installs it)`);
}

/** A browser with a fresh profile (--user-data-dir) of its own; `close` removes it. */
export async function startBrowser(opts: { viewport?: { width: number; height: number } } = {}): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  requireChromium();
  const profile = mkdtempSync(join(tmpdir(), 'canonport-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: opts.viewport ?? { width: 1400, height: 900 },
    });
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * A browser for many separate clients at once (the bench's 20 live pages):
 * each `newContext()` has its own connections (Chromium keeps 6 per host and
 * profile, and a live page holds one open). Playwright gives it a fresh
 * temporary profile and removes it on close.
 */
export async function startBrowserForContexts(): Promise<Browser> {
  requireChromium();
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
}
