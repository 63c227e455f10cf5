import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './scratch-project.js';
import { requireTool } from './tools.js';

/**
 * Debian's Python with Debian's grpcio and protobuf. They install for
 * /usr/bin/python3, which need not be the first python3 on PATH (pyenv,
 * a virtualenv), so the tests name it.
 */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/** Fails naming the Debian packages when /usr/bin/python3 cannot import grpc and protobuf. */
export function requirePythonGrpc(): void {
  if (!existsSync(SYSTEM_PYTHON)) throw new Error(`${SYSTEM_PYTHON} is missing: apt-get install -y python3 python3-grpcio python3-protobuf (.ci/run installs them)`);
  for (const [module, pkg] of [
    ['grpc', 'python3-grpcio'],
    ['google.protobuf', 'python3-protobuf'],
  ] as const) {
    try {
      execFileSync(SYSTEM_PYTHON, ['-c', `import ${module}`], { stdio: 'pipe', env: pythonEnv() });
    } catch {
      throw new Error(`${SYSTEM_PYTHON} cannot import ${module}: apt-get install -y ${pkg} (.ci/run installs it)`);
    }
  }
}

/** The environment for the system Python: no user site-packages, no PYTHONPATH from the caller, no proxies. */
export function pythonEnv(pythonPath?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(PYTHON|PYENV|VIRTUAL_ENV)|_proxy$/i.test(k)) env[k] = v;
  return { ...env, PYTHONNOUSERSITE: '1', PYTHONDONTWRITEBYTECODE: '1', ...(pythonPath ? { PYTHONPATH: pythonPath } : {}) };
}

/**
 * Python modules for canonport/v1/canonport.proto and health/v1/health.proto
 * in `outDir`, made by protoc and grpc_python_plugin (importable as
 * `canonport.v1.canonport_pb2[_grpc]`, `health.v1.health_pb2[_grpc]`).
 * Health keeps grpc-health-check's path: under `grpc/` it would shadow the grpc package.
 */
export function generatePythonStubs(outDir: string): void {
  const protoc = requireTool('protoc', 'protobuf-compiler');
  const plugin = requireTool('grpc_python_plugin', 'protobuf-compiler-grpc');
  execFileSync(
    protoc,
    [
      `-I${join(REPO, 'proto')}`,
      `-I${join(REPO, 'node_modules/grpc-health-check/proto')}`,
      `--python_out=${outDir}`,
      `--grpc_python_out=${outDir}`,
      `--plugin=protoc-gen-grpc_python=${plugin}`,
      'canonport/v1/canonport.proto',
      'health/v1/health.proto',
    ],
    { stdio: 'pipe' },
  );
}
