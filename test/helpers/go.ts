import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './scratch-project.js';
import { requireTool } from './tools.js';

/**
 * Go with Debian's grpc-go and protobuf-go (source under /usr/share/gocode),
 * built offline in GOPATH mode, the way Debian builds its own Go packages:
 * no module download, so the build needs nothing but the Debian packages.
 */
const DEBIAN_GOPATH = '/usr/share/gocode';

/** Go's build cache, kept between runs in the checkout (where tools keep caches), not in the temporary directory, which a test run leaves as it found it. */
const GOCACHE = join(REPO, 'node_modules', '.cache', 'go-build');

/** The environment for `go build`: GOPATH mode over `gopath` and Debian's tree, no proxy, a build cache kept between runs. */
function goEnv(gopath: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^GO/.test(k)) env[k] = v;
  return {
    ...env,
    GO111MODULE: 'off',
    GOPATH: `${gopath}:${DEBIAN_GOPATH}`,
    GOPROXY: 'off',
    GOFLAGS: '',
    GOCACHE,
  };
}

function exec(file: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv }): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(file, args, { ...opts, timeout: 300_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`)) : resolve(),
    ),
  );
}

/**
 * Generates canonport/v1 with protoc-gen-go and protoc-gen-go-grpc into a
 * GOPATH under `dir`, builds test/fixtures/interop/go against it, and
 * returns the binary's path. Fails naming the Debian package of a missing tool.
 */
export async function buildGoClient(dir: string): Promise<string> {
  const protoc = requireTool('protoc', 'protobuf-compiler');
  const go = requireTool('go', 'golang-go');
  requireTool('protoc-gen-go', 'protoc-gen-go');
  requireTool('protoc-gen-go-grpc', 'protoc-gen-go-grpc');
  for (const [path, pkg] of [
    ['google.golang.org/grpc', 'golang-google-grpc-dev'],
    ['google.golang.org/protobuf/proto', 'golang-google-protobuf-dev'],
    ['github.com/golang/protobuf/proto', 'golang-github-golang-protobuf-1-5-dev'],
  ] as const) {
    // Present as source in Debian's GOPATH, else the build's "cannot find package" would not say which package to install.
    await exec(go, ['list', path], { env: goEnv(dir) }).catch(() => {
      throw new Error(`Go package ${path} is not in ${DEBIAN_GOPATH}: apt-get install -y ${pkg} (.ci/run installs it)`);
    });
  }
  const src = join(dir, 'src');
  mkdirSync(join(src, 'canonport-interop'), { recursive: true });
  // go_package "canonport/v1" puts the generated code at src/canonport/v1, its import path here.
  await exec(protoc, [`-I${join(REPO, 'proto')}`, `--go_out=${src}`, `--go-grpc_out=${src}`, 'canonport/v1/canonport.proto'], {});
  copyFileSync(join(REPO, 'test/fixtures/interop/go/main.go'), join(src, 'canonport-interop/main.go'));
  const binary = join(dir, 'canonport-interop');
  await exec(go, ['build', '-o', binary, '.'], { cwd: join(src, 'canonport-interop'), env: goEnv(dir) });
  return binary;
}
