import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Document } from 'yaml';
import { CanonportError, ErrorCodes } from '../errors.js';
import { knownFields, nearestField, RegistrySchema } from './schema.js';
import { Registry } from './registry.js';

/** Where in the file a problem is: 1-based line and column, dotted field path. */
export interface Location {
  file: string;
  line?: number | undefined;
  column?: number | undefined;
  field?: string | undefined;
}

/** The registry in `file`, or the empty one (every name on the base32 scheme) when there is none. */
export async function loadRegistry(file: string | null | undefined): Promise<Registry> {
  return file ? loadRegistryFile(file) : Registry.empty();
}

/** Reads and validates a registry file; throws CP_REGISTRY_UNREADABLE or CP_REGISTRY_INVALID. */
export async function loadRegistryFile(file: string): Promise<Registry> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    throw new CanonportError(ErrorCodes.REGISTRY_UNREADABLE, `cannot read registry file ${file}: ${reason}`, { file }, {
      cause: err,
    });
  }
  return parseRegistry(text, file);
}

/** Parses registry YAML text; every error names the file, line, column and field. */
export function parseRegistry(text: string, file = '<registry>'): Registry {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lineCounter.linePos(pastIndent(text, e.pos[0]));
    const msg = e.message.split('\n')[0] ?? e.message;
    throw invalid({ file, line: pos.line, column: pos.col }, msg);
  }
  const raw: unknown = doc.toJS() ?? {};
  const parsed = RegistrySchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    let path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0]!;
      const near = nearestField(key, knownFields(path));
      path = [...path, key];
      message = `unknown field "${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
    } else if (issue.code === 'invalid_key') {
      // zod says only "Invalid key in record"; the key's own issue says why.
      message = `name "${String(path[path.length - 1])}" ${issue.issues[0]?.message ?? 'is not valid'}`;
    }
    const loc = locate(doc, lineCounter, path);
    throw invalid({ file, ...loc, field: path.join('.') || '(top level)' }, message);
  }
  return Registry.fromFile(parsed.data, file);
}

/**
 * Where an error really is when yaml reports the indentation before it: a
 * mis-indented item (`   db:` under `  api:`) is reported at the start of
 * its line (column 1); the item starts after the spaces (column 4). Tabs
 * are left alone: a tab used as indentation is itself the error.
 */
function pastIndent(text: string, offset: number): number {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  if (text.slice(lineStart, offset).trim() !== '' || text[offset] !== ' ') return offset;
  let at = offset;
  while (text[at] === ' ') at++;
  return at < text.length && text[at] !== '\n' && text[at] !== '\r' ? at : offset;
}

function invalid(loc: Location, message: string): CanonportError {
  const where = `${loc.file}${loc.line ? `:${loc.line}:${loc.column ?? 1}` : ''}`;
  const field = loc.field ? ` (${loc.field})` : '';
  return new CanonportError(ErrorCodes.REGISTRY_INVALID, `${where}${field}: ${message}`, { ...loc });
}

/** Finds the closest node to `path` that exists, and returns its position. */
function locate(doc: Document, lc: LineCounter, path: (string | number)[]): { line?: number; column?: number } {
  for (let n = path.length; n >= 0; n--) {
    const parentPath = path.slice(0, Math.max(0, n - 1));
    const key = path[n - 1];
    const parent = n === 0 ? doc.contents : doc.getIn(parentPath, true);
    let range: [number, number, number] | null | undefined;
    if (n === 0) range = (parent as { range?: [number, number, number] } | null)?.range;
    else if (isMap(parent)) {
      const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
      range = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
    } else {
      range = (doc.getIn([...parentPath, key as string | number], true) as { range?: [number, number, number] } | undefined)?.range;
    }
    if (range) {
      const pos = lc.linePos(range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return {};
}
