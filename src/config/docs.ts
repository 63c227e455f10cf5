import { showSetting, type Config } from './config.js';
import type { Shown } from './kinds.js';
import { fileKeys, SETTINGS, settingEntries, type Setting, type SettingKey, type SettingSource } from './settings.js';

/**
 * What people read about the settings, derived from the table: the help
 * line of each flag, `serve --print-config`, and the table of
 * docs/configuration.md.
 */

/** The help line of a setting's flag: what it does, where else it can be set, its default. */
export function helpLine(s: Setting): string {
  const also = [s.kind.list ? 'repeatable' : '', s.env ? `env ${s.env}` : '', `default: ${s.defaultText}`, s.applies === 'restart' ? 'restart to change' : ''];
  return `${s.help} [${also.filter(Boolean).join('; ')}]`;
}

/** How print-config names a source: the flag, variable or file key itself. */
function sourceText(key: SettingKey, source: SettingSource): string {
  const s: Setting = SETTINGS[key];
  if (source === 'flag') return `flag ${s.flag?.name ?? ''}`;
  if (source === 'env') return `env ${s.env ?? ''}`;
  if (source === 'file') return `file ${fileKeys(key).join(' + ')}`;
  return source;
}

/** The settings view of `--print-config --json`: every setting's value, then where each came from. */
export function configJson(c: Config): Record<string, Shown | Record<string, string>> {
  const out: Record<string, Shown | Record<string, string>> = {};
  for (const [key] of settingEntries()) out[key] = shownValue(c, key);
  out.sources = Object.fromEntries(settingEntries().map(([key]) => [key, c.sources[key]]));
  return out;
}

/** `--print-config` as text: one line per setting, its value, where it came from, and when it applies. */
export function configText(c: Config): string[] {
  const rows = settingEntries().map(([key, s]) => {
    const v = shownValue(c, key);
    const value = v === null ? '(none)' : Array.isArray(v) ? (v.length ? v.join(', ') : '(none)') : String(v);
    return [key, value, sourceText(key, c.sources[key]), s.applies === 'restart' ? 'restart' : 'reload'];
  });
  const head = ['setting', 'value', 'from', 'applies on'];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(width[i]!))).join('  '));
}

/** Zones as served: `localhost` always, then the configured ones. */
function shownValue(c: Config, key: SettingKey): Shown {
  const v = showSetting(key, c[key]);
  return key === 'zones' && Array.isArray(v) ? ['localhost', ...v.filter((z) => z !== 'localhost')] : v;
}

const cell = (text: string) => text.replaceAll('|', '\\|');
const code = (text: string) => `\`${text}\``;

/** docs/configuration.md's settings table, one row per setting, in table order. */
export function settingsTable(): string {
  const rows = settingEntries().map(([key, s]) => {
    const flag = s.flag ? code(`${s.flag.name}${s.flag.value ? ` ${s.flag.value}` : ''}`) + (s.kind.list ? ' (repeatable)' : '') : '—';
    const file = fileKeys(key).map(code).join(', ') || '—';
    return [code(key), flag, s.env ? code(s.env) : '—', file, s.kind.accepts, code(s.defaultText), s.applies, s.doc];
  });
  const head = ['setting', 'flag', 'env', 'registry file', 'accepts', 'default', 'applies on', 'meaning'];
  return [head, head.map(() => '---'), ...rows].map((r) => `| ${r.map(cell).join(' | ')} |`).join('\n');
}

export const TABLE_BEGIN = '<!-- settings table: generated from src/config/settings.ts by `npm run docs:settings`; do not edit -->';
export const TABLE_END = '<!-- end of settings table -->';

/** The page (docs/configuration.md) with its settings table replaced by the generated one. Throws when the markers are missing. */
export function withSettingsTable(page: string): string {
  const begin = page.indexOf(TABLE_BEGIN);
  const end = page.indexOf(TABLE_END);
  if (begin === -1 || end < begin) throw new Error(`the page has no settings table markers (${TABLE_BEGIN} … ${TABLE_END})`);
  return `${page.slice(0, begin)}${TABLE_BEGIN}\n${settingsTable()}\n${page.slice(end)}`;
}
