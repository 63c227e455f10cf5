import { join } from 'node:path';
import { describeInterop, spawnJsonLines } from './helpers/interop.js';
import { generatePythonStubs, pythonEnv, requirePythonGrpc, SYSTEM_PYTHON } from './helpers/python.js';
import { REPO } from './helpers/scratch-project.js';

/**
 * canonport's gRPC API from Python: Debian's grpcio (for /usr/bin/python3)
 * with stubs protoc and grpc_python_plugin generate from the .proto files,
 * running test/fixtures/interop/client.py against a real daemon.
 */
describeInterop('Python', {
  prepare(dir) {
    requirePythonGrpc();
    generatePythonStubs(dir);
  },
  start: (dir, daemon, planFile) => spawnJsonLines(SYSTEM_PYTHON, [join(REPO, 'test/fixtures/interop/client.py'), daemon, planFile], pythonEnv(dir)),
});
