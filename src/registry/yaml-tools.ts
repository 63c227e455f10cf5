import type * as Yaml from 'yaml';

/**
 * Reading registry YAML, in one self-contained function so the same code
 * runs in the daemon's thread (parseRegistry, the CLI) and in a worker
 * thread (load.ts loadRegistryFile: a large file is parsed off the event
 * loop). The worker gets this function's source (Function.prototype.toString)
 * and the path of the `yaml` package: it may use nothing but its argument
 * and the language's globals, no import and no other function of this
 * module. It would be a file of its own if tsc could emit one a worker
 * loads both from dist/ and from the TypeScript sources the tests run.
 */

export interface YamlProblem {
  line: number;
  column: number;
  message: string;
}

export type YamlResult = { ok: true; data: unknown } | { ok: false; problem: YamlProblem };

export interface YamlTools {
  /** Parses text into plain data, refusing YAML errors and duplicate keys (in linear time). */
  parse(text: string): YamlResult;
  /** Where the closest node to `path` that exists is, in the text last parsed (after parse() succeeded). */
  locate(path: readonly (string | number)[]): { line?: number; column?: number };
}

export function yamlTools(YAML: typeof Yaml): YamlTools {
  let doc: Yaml.Document | null = null;
  let lc: Yaml.LineCounter | null = null;

  /**
   * The first key that repeats in a map, anywhere in the document. yaml's own
   * `uniqueKeys` compares each key with every earlier one of its map, which
   * made a 20,000-service registry take 10 s to load (issue 21, finding 12);
   * a set per map does the same in linear time. Keys compare as yaml compares
   * scalars: by value (1 and "1" differ).
   */
  function duplicateKey(root: unknown): Yaml.Node | null {
    const stack: unknown[] = [root];
    while (stack.length > 0) {
      const node = stack.pop();
      if (YAML.isMap(node)) {
        const seen = new Set<string>();
        for (const pair of node.items) {
          const key = pair.key;
          if (YAML.isScalar(key)) {
            const id = `${typeof key.value}:${String(key.value)}`;
            if (seen.has(id)) return key;
            seen.add(id);
          }
          stack.push(pair.value);
        }
      } else if (YAML.isSeq(node)) {
        for (const item of node.items) stack.push(item);
      }
    }
    return null;
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

  return {
    parse(text) {
      lc = new YAML.LineCounter();
      doc = YAML.parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false });
      if (doc.errors.length > 0) {
        const e = doc.errors[0]!;
        const pos = lc.linePos(pastIndent(text, e.pos[0]));
        return { ok: false, problem: { line: pos.line, column: pos.col, message: e.message.split('\n')[0] ?? e.message } };
      }
      const dup = duplicateKey(doc.contents);
      if (dup?.range) {
        const pos = lc.linePos(dup.range[0]);
        return { ok: false, problem: { line: pos.line, column: pos.col, message: 'Map keys must be unique' } };
      }
      return { ok: true, data: doc.toJS() ?? {} };
    },

    locate(path) {
      if (!doc || !lc) return {};
      for (let n = path.length; n >= 0; n--) {
        const parentPath = path.slice(0, Math.max(0, n - 1));
        const key = path[n - 1];
        const parent = n === 0 ? doc.contents : doc.getIn(parentPath, true);
        let range: [number, number, number] | null | undefined;
        if (n === 0) range = (parent as { range?: [number, number, number] } | null)?.range;
        else if (YAML.isMap(parent)) {
          const pair = parent.items.find((p) => YAML.isPair(p) && YAML.isScalar(p.key) && String(p.key.value) === String(key));
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
    },
  };
}
