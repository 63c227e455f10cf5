import { describe, expect, it } from 'vitest';
import { TypeUrl, lazyXdsProtos, resourceTypeOf, xdsProtos } from '../src/xds/protos.js';
import { canonicalEndpoints, encodeResource, lookupKey, sameEndpoints } from '../src/xds/resources.js';

/** The pure parts of src/xds: resource names to discovery keys, endpoint sets, encoding. */

describe('lookupKey', () => {
  it.each([
    ['api.cluster-1.example.com', 'api.cluster-1.example.com'],
    ['API.Cluster-1.Example.com.', 'api.cluster-1.example.com'],
    ['api.cluster-1.example.com:12082', 'api.cluster-1.example.com'],
    ['api.cluster-1.example.com.:443', 'api.cluster-1.example.com'],
    ['_api._tcp.cluster-1.example.com', '_api._tcp.cluster-1.example.com'],
    ['v2.user.cluster-1.example.com', 'v2.user.cluster-1.example.com'],
    ['api.localhost', 'api.localhost'],
  ])('%s → %s', (name, key) => expect(lookupKey(name)).toBe(key));

  it.each([[''], ['xdstp://authority/envoy.config.listener.v3.Listener/api'], ['has space.example.com'], ['a'.repeat(261)], ['api.example.com:'], ['*.example.com']])(
    'no key for %j',
    (name) => expect(lookupKey(name)).toBeNull(),
  );
});

describe('canonicalEndpoints', () => {
  it('sorts, removes duplicates and drops what no client could dial', () => {
    const got = canonicalEndpoints([
      { address: '10.0.0.6', port: 12082 },
      { address: 'fd00::5', port: 12082 },
      { address: '10.0.0.5', port: 12082 },
      { address: '10.0.0.6', port: 12082 },
      { address: 'not-an-ip', port: 12082 },
      { address: '10.0.0.7', port: 0 },
      { address: '10.0.0.8', port: 70000 },
    ]);
    expect(got).toEqual([
      { address: '10.0.0.5', port: 12082 },
      { address: '10.0.0.6', port: 12082 },
      { address: 'fd00::5', port: 12082 },
    ]);
    expect(sameEndpoints(got, canonicalEndpoints([...got].reverse()))).toBe(true);
    expect(sameEndpoints(got, got.slice(1))).toBe(false);
    expect(sameEndpoints(got, canonicalEndpoints(got.map((e) => ({ ...e, port: 12083 }))))).toBe(false);
  });
});

describe('lazyXdsProtos: the ADS service written out, the protos parsed on first use', () => {
  it('declares the methods proto-loader makes from ads.proto, and its serializers give the same bytes', () => {
    const lazy = lazyXdsProtos().ads;
    const parsed = xdsProtos().ads;
    expect(Object.keys(lazy).sort()).toEqual(Object.keys(parsed).sort());
    for (const name of Object.keys(parsed)) {
      const [l, p] = [lazy[name]!, parsed[name]!];
      expect({ path: l.path, requestStream: l.requestStream, responseStream: l.responseStream, originalName: l.originalName }).toEqual({
        path: p.path,
        requestStream: p.requestStream,
        responseStream: p.responseStream,
        originalName: p.originalName,
      });
    }
    const request = { version_info: '1', resource_names: ['api.x'], type_url: TypeUrl.listener, response_nonce: 'n1', node: { id: 'a' } };
    const [lazySotw, parsedSotw] = [lazy.StreamAggregatedResources!, parsed.StreamAggregatedResources!];
    const bytes = lazySotw.requestSerialize(request);
    expect(bytes.equals(parsedSotw.requestSerialize(request))).toBe(true);
    expect(lazySotw.requestDeserialize(bytes)).toEqual(parsedSotw.requestDeserialize(bytes));
    const response = { version_info: '2', type_url: TypeUrl.cluster, nonce: 'n2', resources: [] };
    const out = lazySotw.responseSerialize(response);
    expect(out.equals(parsedSotw.responseSerialize(response))).toBe(true);
    expect(lazySotw.responseDeserialize(out)).toEqual(parsedSotw.responseDeserialize(out));
    const delta = { type_url: TypeUrl.endpoint, resource_names_subscribe: ['api.x'] };
    const d = lazy.DeltaAggregatedResources!.requestSerialize(delta);
    expect(d.equals(parsed.DeltaAggregatedResources!.requestSerialize(delta))).toBe(true);
  });
});

describe('encodeResource', () => {
  const protos = xdsProtos();
  it('gives equal tokens for equal content and different ones otherwise', () => {
    const eps = [{ address: '10.0.0.5', port: 12082 }];
    const a = encodeResource(protos, 'endpoint', 'api.x', 'api.x', eps);
    const b = encodeResource(protos, 'endpoint', 'api.x', 'api.x', [...eps]);
    const c = encodeResource(protos, 'endpoint', 'api.x', 'api.x', [{ address: '10.0.0.5', port: 12083 }]);
    expect(a.token).toBe(b.token);
    expect(a.token).not.toBe(c.token);
    // Listener, route and cluster do not depend on the endpoints.
    for (const type of ['listener', 'route', 'cluster'] as const) {
      expect(encodeResource(protos, type, 'api.x', 'api.x', eps).token).toBe(encodeResource(protos, type, 'api.x', 'api.x', []).token);
    }
  });

  it('encodes each type so that it decodes back under its type URL', () => {
    for (const type of ['listener', 'route', 'cluster', 'endpoint'] as const) {
      const r = encodeResource(protos, type, 'API.x:1', 'api.x', [{ address: '::1', port: 1 }]);
      const message = protos.decode(TypeUrl[type].slice(TypeUrl[type].indexOf('/') + 1), r.bytes);
      expect(type === 'endpoint' ? message.cluster_name : message.name).toBe('API.x:1');
      expect(resourceTypeOf(TypeUrl[type])).toBe(type);
    }
    expect(resourceTypeOf('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret')).toBeUndefined();
  });
});
