// ES module hooks that test/helpers/loaded-packages.cjs registers in a
// process under test: every file an ES import resolves to, one URL a line,
// appended to CP_TEST_LOADED_PACKAGES + '.esm' (an ES module is not in
// require's cache; zod is one). Runs on node's hooks thread, which sees the
// process's environment.
import { appendFileSync } from 'node:fs';

const out = process.env.CP_TEST_LOADED_PACKAGES;

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (out && r.url.startsWith('file:')) appendFileSync(`${out}.esm`, `${r.url}\n`);
  return r;
}
