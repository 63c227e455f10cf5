import { buildGoClient } from './helpers/go.js';
import { describeInterop, spawnJsonLines } from './helpers/interop.js';
import { userEnv } from './helpers/scratch-project.js';

/**
 * canonport's gRPC API from Go: Debian's grpc-go with stubs protoc-gen-go
 * and protoc-gen-go-grpc generate from the .proto (its go_package names
 * the import path), running test/fixtures/interop/go/main.go against a
 * real daemon. The first build compiles grpc-go (tens of seconds on two
 * cores); later runs on the same machine reuse Go's build cache.
 */
let binary: string;

describeInterop(
  'Go',
  {
    async prepare(dir) {
      binary = await buildGoClient(dir);
    },
    // No proxy variables: the daemon is on loopback.
    start: (_dir, daemon, planFile) => spawnJsonLines(binary, [daemon, planFile], userEnv({ http_proxy: '', https_proxy: '', HTTP_PROXY: '', HTTPS_PROXY: '' })),
  },
  300_000,
);

